//! The full-screen interface's state and drawing, on ratatui's `TestBackend`: lines in
//! their conversations with a time, unread counts, the status bar, resizes that lose
//! nothing, multi-line pastes sent one line at a time, Ctrl-C and Ctrl-D, completion,
//! "did you mean", scrollback, pending messages, the bell and `NO_COLOR`.

use crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use seguro::client::Conn;
use seguro::output::Clock;
use seguro::tui::{Request, Screen, Ui};
use seguro_core::chat::Line;
use seguro_core::client::Event;
use seguro_core::directory::Change;

fn screen(w: u16, h: u16, color: bool) -> Screen<TestBackend> {
    let mut ui = Ui::new("alice", color, true, Clock::utc());
    ui.set_server(
        "127.0.0.1:5000",
        "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45",
    );
    ui.set_conn(Conn::Connected);
    Screen::new(ui, Terminal::new(TestBackend::new(w, h)).unwrap())
}

fn text(s: &mut Screen<TestBackend>) -> Vec<String> {
    s.redraw(&mut || {});
    let buf = s.backend().buffer();
    let a = buf.area;
    (a.top()..a.bottom())
        .map(|y| {
            (a.left()..a.right())
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn key(code: KeyCode) -> TermEvent {
    TermEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> TermEvent {
    TermEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn typed(ui: &mut Ui, s: &str) {
    for c in s.chars() {
        assert_eq!(ui.event(&key(KeyCode::Char(c))), Request::Nothing);
    }
}

fn message<'a>(from: &'a str, text: &'a str) -> Line<'a> {
    Line::Received(Event::Message { from, text })
}

/// `HH:MM ` at the start of a message pane row (after the side list).
fn stamped(row: &str, needle: &str) -> bool {
    row.find(needle).is_some_and(|i| {
        let b = row.as_bytes();
        i >= 6
            && b[i - 1] == b' '
            && b[i - 4] == b':'
            && b[i - 6..i - 4].iter().all(u8::is_ascii_digit)
            && b[i - 3..i - 1].iter().all(u8::is_ascii_digit)
    })
}

#[test]
fn lines_go_to_their_conversations_with_times_and_unread_counts() {
    let mut s = screen(90, 14, true);
    s.ui.push(&Line::Connected {
        server: "127.0.0.1:5000",
        user: "alice",
    });
    s.ui.push(&message("bob", "hi alice"));
    s.ui.push(&message("bob", "are you there?"));
    s.ui.push(&message("carol", "hello"));
    assert!(
        s.ui.take_bell(),
        "a message arrived in a conversation not on screen"
    );
    let rows = text(&mut s);
    let all = rows.join("\n");
    assert!(all.contains(">1 *system*"), "{all}");
    assert!(all.contains(" 2 bob (2)"), "{all}");
    assert!(all.contains(" 3 carol (1)"), "{all}");
    assert!(
        rows.iter()
            .any(|r| stamped(r, "[SYS] connected to 127.0.0.1:5000 as alice")),
        "{all}"
    );
    assert!(
        !all.contains("hi alice"),
        "bob's messages are in bob's conversation: {all}"
    );
    let status = &rows[12];
    assert!(
        status.contains("alice@127.0.0.1:5000 | connected | server AB:CD:EF"),
        "{status}"
    );

    // Alt-2: bob's conversation, read.
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('2'),
        KeyModifiers::ALT,
    )));
    let rows = text(&mut s);
    let all = rows.join("\n");
    assert!(rows.iter().any(|r| stamped(r, "[bob] hi alice")), "{all}");
    assert!(
        rows.iter().any(|r| stamped(r, "[bob] are you there?")),
        "{all}"
    );
    assert!(all.contains(">2 bob\n") || all.contains(">2 bob "), "{all}");
    assert!(rows[12].contains("bob: unverified"), "{}", rows[12]);
    assert_eq!(rows[13], "bob>");
    s.ui.push(&message("bob", "now on screen"));
    assert!(!s.ui.take_bell(), "no bell for the conversation on screen");

    // A key change marks the contact.
    s.ui.push(&Line::KeyChanged {
        name: "bob",
        old: &[1; 32],
        new: &[2; 32],
        verified: false,
    });
    let rows = text(&mut s);
    assert!(rows[12].contains("bob: KEY CHANGED"), "{}", rows[12]);
}

#[test]
fn a_resize_to_30_columns_and_back_loses_no_line() {
    let mut s = screen(90, 20, true);
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('2'),
        KeyModifiers::ALT,
    )));
    typed(&mut s.ui, "/q bob");
    assert_eq!(s.ui.event(&key(KeyCode::Enter)), Request::Nothing);
    let long = "a long message that certainly needs more than one row when the window is narrow";
    for i in 0..3 {
        s.ui.push(&message("bob", &format!("{i}: {long}")));
    }
    let before = text(&mut s);
    s.terminal_mut().backend_mut().resize(30, 20);
    let narrow = text(&mut s).join("\n");
    // Every message is there, wrapped.
    for i in 0..3 {
        assert!(narrow.contains(&format!("[bob] {i}: a")), "{narrow}");
    }
    assert!(narrow.contains("narrow"), "{narrow}");
    s.terminal_mut().backend_mut().resize(90, 20);
    let after = text(&mut s);
    assert_eq!(before, after, "the same screen after resizing back");
}

#[test]
fn a_multi_line_paste_is_one_message_per_line_and_nothing_is_lost() {
    let mut s = screen(80, 12, true);
    typed(&mut s.ui, "/q bob");
    s.ui.event(&key(KeyCode::Enter));
    s.ui.event(&TermEvent::Paste("first\r\nsecond\n\nthird".into()));
    let rows = text(&mut s);
    let at = rows
        .iter()
        .position(|r| r == "bob> first")
        .expect("the paste in the input");
    assert_eq!(
        rows[at + 1..=at + 3],
        ["  second", "", "  third"],
        "{rows:#?}"
    );
    assert!(rows[at - 1].contains("| connected |"), "{rows:#?}");
    let first = s.ui.event(&key(KeyCode::Enter));
    let send = |l: &str| Request::Send {
        conversation: Some("bob".into()),
        line: l.into(),
    };
    assert_eq!(first, send("first"));
    assert_eq!(s.ui.take_queued(), Some(send("second")));
    assert_eq!(s.ui.take_queued(), Some(send("third")));
    assert_eq!(s.ui.take_queued(), None);
    assert_eq!(s.ui.input(), "");
    // Up brings the whole paste back.
    s.ui.event(&key(KeyCode::Up));
    assert_eq!(s.ui.input(), "first\nsecond\n\nthird");
}

#[test]
fn ctrl_c_clears_the_line_and_ctrl_d_leaves() {
    let mut s = screen(80, 10, true);
    typed(&mut s.ui, "half typed");
    assert_eq!(s.ui.event(&ctrl('c')), Request::Nothing);
    assert_eq!(s.ui.input(), "");
    assert_eq!(s.ui.event(&ctrl('c')), Request::Nothing);
    assert!(text(&mut s).join("\n").contains("Ctrl-D or /quit leaves"));
    assert_eq!(s.ui.event(&ctrl('d')), Request::Quit);
    typed(&mut s.ui, "/quit");
    assert_eq!(s.ui.event(&key(KeyCode::Enter)), Request::Quit);
}

#[test]
fn tab_completes_commands_and_names_and_typos_get_a_suggestion() {
    let mut s = screen(80, 10, true);
    s.ui.push(&Line::User {
        name: "bernadette",
        key: &[3; 32],
        me: false,
    });
    s.ui.push(&Line::Received(Event::Change(Change::Joined {
        name: "bob",
        key: &[4; 32],
    })));
    typed(&mut s.ui, "/li");
    s.ui.event(&key(KeyCode::Tab));
    assert_eq!(s.ui.input(), "/list ");
    s.ui.event(&ctrl('c'));
    typed(&mut s.ui, "/to be");
    s.ui.event(&key(KeyCode::Tab));
    assert_eq!(s.ui.input(), "/to bernadette ");
    s.ui.event(&ctrl('c'));
    // Two candidates: the common part, then the list.
    typed(&mut s.ui, "/fp b");
    s.ui.event(&key(KeyCode::Tab));
    assert_eq!(s.ui.input(), "/fp b");
    assert!(
        text(&mut s)
            .join("\n")
            .contains("completions: bernadette bob")
    );
    s.ui.event(&ctrl('c'));
    typed(&mut s.ui, "/lsit");
    assert_eq!(s.ui.event(&key(KeyCode::Enter)), Request::Nothing);
    assert!(
        text(&mut s)
            .join("\n")
            .contains("[ERROR] unknown command /lsit; did you mean /list?")
    );
    typed(&mut s.ui, "/qeury bob");
    assert_eq!(s.ui.event(&key(KeyCode::Enter)), Request::Nothing);
    assert!(text(&mut s).join("\n").contains("did you mean /query?"));
}

#[test]
fn page_up_shows_older_lines_and_page_down_comes_back() {
    let mut s = screen(80, 10, true);
    for i in 0..40 {
        s.ui.push(&Line::HostInfo(&format!("line {i:02}")));
    }
    let bottom = text(&mut s).join("\n");
    assert!(
        bottom.contains("line 39") && !bottom.contains("line 20"),
        "{bottom}"
    );
    s.ui.event(&key(KeyCode::PageUp));
    s.ui.event(&key(KeyCode::PageUp));
    let up = text(&mut s).join("\n");
    assert!(!up.contains("line 39"), "{up}");
    assert!(up.contains("more rows below (PgDn)"), "{up}");
    // A line arriving while scrolled up does not move the view.
    s.ui.push(&Line::HostInfo(&"line 40"));
    assert_eq!(
        up.replace("more rows below", ""),
        text(&mut s)
            .join("\n")
            .replace("more rows below", "")
            .replace("-- 15", "-- 14")
    );
    for _ in 0..5 {
        s.ui.event(&key(KeyCode::PageDown));
    }
    let back = text(&mut s).join("\n");
    assert!(
        back.contains("line 40") && !back.contains("more rows below"),
        "{back}"
    );
    // The mouse wheel scrolls too.
    s.ui.event(&TermEvent::Mouse(crossterm::event::MouseEvent {
        kind: crossterm::event::MouseEventKind::ScrollUp,
        column: 30,
        row: 3,
        modifiers: KeyModifiers::NONE,
    }));
    assert!(text(&mut s).join("\n").contains("more rows below"));
}

#[test]
fn own_messages_show_pending_until_the_outbox_sends_them() {
    let mut s = screen(80, 10, true);
    s.ui.set_conn(Conn::Reconnecting {
        at: std::time::Instant::now() + std::time::Duration::from_secs(3),
    });
    // Typed in the system pane: shown there with its recipient, and in carol's.
    s.ui.own_message(Some("carol"), "to carol", true);
    assert!(
        text(&mut s)
            .join("\n")
            .contains("[alice → carol] to carol (pending)")
    );
    typed(&mut s.ui, "/q bob");
    s.ui.event(&key(KeyCode::Enter));
    s.ui.own_message(Some("bob"), "typed offline", true);
    s.ui.set_outbox(1);
    let rows = text(&mut s);
    let all = rows.join("\n");
    assert!(all.contains("[alice] typed offline (pending)"), "{all}");
    assert!(rows[8].contains("reconnecting in 3 s"), "{}", rows[8]);
    assert!(rows[8].contains("outbox 1"), "{}", rows[8]);
    s.ui.set_conn(Conn::Connected);
    s.ui.sent_from_outbox(Some("bob"), "typed offline");
    s.ui.sent_from_outbox(Some("carol"), "to carol");
    s.ui.set_outbox(0);
    let rows = text(&mut s);
    let all = rows.join("\n");
    assert!(
        all.contains("[alice] typed offline") && !all.contains("(pending)"),
        "{all}"
    );
    assert!(!rows[8].contains("outbox"), "{}", rows[8]);
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('1'),
        KeyModifiers::ALT,
    )));
    let all = text(&mut s).join("\n");
    assert!(
        all.contains("[alice → carol] to carol") && !all.contains("(pending)"),
        "{all}"
    );
}

#[test]
fn no_color_draws_without_colours() {
    for color in [true, false] {
        let mut s = screen(60, 6, color);
        s.ui.push(&Line::HostError(&"boom"));
        text(&mut s);
        let buf = s.backend().buffer();
        let coloured = buf
            .content()
            .iter()
            .any(|c| c.fg != Color::Reset || c.bg != Color::Reset);
        assert_eq!(coloured, color, "color={color}");
    }
}

#[test]
fn help_adds_the_interfaces_own_commands_after_cores() {
    let mut s = screen(100, 30, true);
    typed(&mut s.ui, "/help");
    let req = s.ui.event(&key(KeyCode::Enter));
    assert_eq!(
        req,
        Request::Send {
            conversation: None,
            line: "/help".into()
        }
    );
    // The client prints core's help as a reply, then the interface adds its own.
    s.ui.begin_reply();
    s.ui.push(&Line::HelpHeader);
    s.ui.end_reply();
    s.ui.help_done();
    let all = text(&mut s).join("\n");
    assert!(all.contains("[SYS] commands:"), "{all}");
    assert!(
        all.contains("[SYS]   /q [<user>]           talk to <user>"),
        "{all}"
    );
    assert!(
        all.contains("[SYS]   /outbox [send|drop]   what waits"),
        "{all}"
    );
    assert!(
        all.contains("[SYS]   /sas <user> [yes|no]  verify <user> by short codes"),
        "{all}"
    );
    assert!(all.contains("Ctrl-D quit"), "{all}");
    // The client's own commands are no typos.
    for cmd in ["/sas bob", "/accept-v1 bob yes"] {
        typed(&mut s.ui, cmd);
        assert_eq!(
            s.ui.event(&key(KeyCode::Enter)),
            Request::Send {
                conversation: None,
                line: cmd.into()
            }
        );
    }
    // Only once, after /help.
    s.ui.help_done();
    assert_eq!(text(&mut s).join("\n").matches("/q [<user>]").count(), 1);
}

#[test]
fn a_message_dropped_from_the_outbox_says_it_was_not_sent() {
    let mut s = screen(100, 10, true);
    typed(&mut s.ui, "/q bob");
    s.ui.event(&key(KeyCode::Enter));
    s.ui.own_message(Some("bob"), "held after a key change", true);
    s.ui.own_message(Some("bob"), "another", true);
    s.ui.dropped_from_outbox(Some("bob"), "held after a key change");
    let all = text(&mut s).join("\n");
    assert!(
        all.contains("[alice] held after a key change (NOT SENT: dropped from the outbox)"),
        "{all}"
    );
    assert!(all.contains("[alice] another (pending)"), "{all}");
}

#[test]
fn what_stays_on_the_normal_screen_after_leaving() {
    let mut s = Screen::new(
        Ui::new("alice", false, false, Clock::utc()),
        Terminal::new(TestBackend::new(80, 20)).unwrap(),
    );
    let after = |s: &Screen<TestBackend>| s.after().map(str::to_owned).collect::<Vec<_>>();
    // Until the first connection: everything (the client may never connect).
    s.set_conn(Conn::Connecting);
    s.print(&Line::HostInfo(&"created a new identity"));
    assert_eq!(after(&s), ["[SYS] created a new identity"]);
    // Connected: it was all on the screen; what comes now is not kept.
    s.set_conn(Conn::Connected);
    s.print(&message("bob", "hi"));
    assert!(after(&s).is_empty(), "{:?}", after(&s));
    // An outage: its lines are kept, so a client that stops during it says why.
    s.set_conn(Conn::Reconnecting {
        at: std::time::Instant::now(),
    });
    s.print(&Line::HostWarn(&"connection lost"));
    s.set_conn(Conn::Connecting);
    s.print(&Line::HostError(&"server certificate does not match"));
    assert_eq!(
        after(&s),
        [
            "[WARN] connection lost",
            "[ERROR] server certificate does not match"
        ]
    );
    // Back: forgotten again.
    s.set_conn(Conn::Connected);
    assert!(after(&s).is_empty());
    // Leaving: everything from then on, even while connected.
    s.leaving();
    s.print(&Line::HostError(&"1 message(s) typed were NOT sent"));
    s.set_conn(Conn::Connected);
    assert_eq!(after(&s), ["[ERROR] 1 message(s) typed were NOT sent"]);
    // Bounded.
    for i in 0..seguro::tui::AFTER + 5 {
        s.print(&Line::HostInfo(&format_args!("line {i}")));
    }
    let a = after(&s);
    assert_eq!(a.len(), seguro::tui::AFTER);
    assert_eq!(
        a.last().map(String::as_str),
        Some(&*format!("[SYS] line {}", seguro::tui::AFTER + 4))
    );
}

#[test]
fn the_status_bar_shows_the_contacts_key_state() {
    use seguro::client::KeyState;
    let mut s = screen(100, 14, false);
    s.ui.push(&message("bob", "hi"));
    s.ui.push(&message("carol", "hello"));
    let bar = |s: &mut Screen<TestBackend>| text(s)[12].clone();
    // In bob's conversation.
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('2'),
        KeyModifiers::ALT,
    )));
    assert!(
        bar(&mut s).contains("| bob: unverified | v1 |"),
        "{}",
        bar(&mut s)
    );
    let state = |n: &str| match n {
        "bob" => KeyState::Verified,
        _ => KeyState::Changed,
    };
    s.ui.set_key_states(&state);
    assert!(
        bar(&mut s).contains("| bob: verified | v1 |"),
        "{}",
        bar(&mut s)
    );
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('3'),
        KeyModifiers::ALT,
    )));
    assert!(
        bar(&mut s).contains("| carol: KEY CHANGED |"),
        "{}",
        bar(&mut s)
    );
    // A key change seen in this session stays marked until the contact is verified.
    s.ui.push(&Line::KeyChanged {
        name: "carol",
        old: &[1; 32],
        new: &[2; 32],
        verified: false,
    });
    s.ui.set_key_states(&|_| KeyState::Unverified);
    assert!(
        bar(&mut s).contains("| carol: KEY CHANGED |"),
        "{}",
        bar(&mut s)
    );
    s.ui.set_key_states(&|_| KeyState::Verified);
    assert!(
        bar(&mut s).contains("| carol: verified |"),
        "{}",
        bar(&mut s)
    );
    s.ui.set_key_states(&|_| KeyState::Unknown);
    assert!(
        bar(&mut s).contains("| carol: no key yet |"),
        "{}",
        bar(&mut s)
    );
    // The system pane names no contact and no protocol (it is no conversation).
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('1'),
        KeyModifiers::ALT,
    )));
    assert!(!bar(&mut s).contains("carol:"), "{}", bar(&mut s));
    assert!(
        bar(&mut s).contains("| connected | server ")
            && !bar(&mut s).contains("v1")
            && !bar(&mut s).contains("v2"),
        "{}",
        bar(&mut s)
    );
}

#[test]
fn the_status_bar_shows_which_protocol_protects_the_conversation() {
    let mut s = screen(120, 14, false);
    s.ui.push(&message("bob", "hi"));
    s.ui.push(&message("carol", "hello"));
    let bar = |s: &mut Screen<TestBackend>| text(s)[12].clone();
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('2'),
        KeyModifiers::ALT,
    )));
    let of = |n: &str| match n {
        "bob" => "v1 (v2 capable)",
        _ => "v1 (peer speaks v1)",
    };
    s.ui.set_protocols(&of);
    assert!(
        bar(&mut s).contains("| bob: unverified | v1 (v2 capable) |"),
        "{}",
        bar(&mut s)
    );
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('3'),
        KeyModifiers::ALT,
    )));
    assert!(
        bar(&mut s).contains("| carol: unverified | v1 (peer speaks v1) |"),
        "{}",
        bar(&mut s)
    );
}

#[test]
fn sent_messages_get_one_tick_when_forwarded_and_two_when_received() {
    use seguro::client::Delivery;
    let mut s = screen(80, 12, false);
    // Typed in the system pane: the copy there is marked too.
    s.ui.own_message(Some("bob"), "uno", false);
    typed(&mut s.ui, "/q bob");
    s.ui.event(&key(KeyCode::Enter));
    s.ui.own_message(Some("bob"), "uno", false);
    s.ui.own_message(Some("bob"), "dos", false);
    let rows = |s: &mut Screen<TestBackend>| {
        text(s)
            .into_iter()
            .filter(|r| r.contains("[alice]"))
            .map(|r| r[r.find("[alice]").unwrap()..].to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&mut s), ["[alice] uno", "[alice] uno", "[alice] dos"]);
    s.ui.delivered("bob", "uno", Delivery::Forwarded);
    s.ui.delivered("bob", "dos", Delivery::Forwarded);
    assert_eq!(
        rows(&mut s),
        ["[alice] uno ✓", "[alice] uno", "[alice] dos ✓"]
    );
    // The oldest line not marked that far: the first "uno", then the second.
    s.ui.delivered("bob", "uno", Delivery::Received);
    s.ui.delivered("bob", "uno", Delivery::Received);
    assert_eq!(
        rows(&mut s),
        ["[alice] uno ✓✓", "[alice] uno ✓✓", "[alice] dos ✓"]
    );
    // A late ack never takes a tick away; a text never sent marks nothing.
    s.ui.delivered("bob", "uno", Delivery::Forwarded);
    s.ui.delivered("bob", "tres", Delivery::Received);
    assert_eq!(
        rows(&mut s),
        ["[alice] uno ✓✓", "[alice] uno ✓✓", "[alice] dos ✓"]
    );
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('1'),
        KeyModifiers::ALT,
    )));
    let all = text(&mut s).join("\n");
    assert!(all.contains("[alice → bob] uno ✓✓"), "{all}");
}

#[test]
fn a_host_line_about_a_peer_shows_in_that_conversation() {
    let mut s = screen(80, 12, false);
    s.ui.push_about("bob", &Line::HostWarn(&"a message from bob was refused"));
    let all = text(&mut s).join("\n");
    assert!(!all.contains("refused"), "not in the system pane:\n{all}");
    assert!(all.contains("bob (1)"), "unread in bob's:\n{all}");
    typed(&mut s.ui, "/q bob");
    s.ui.event(&key(KeyCode::Enter));
    let all = text(&mut s).join("\n");
    assert!(
        all.contains("[WARN] a message from bob was refused"),
        "{all}"
    );
    // About nobody, or about ourselves: the system pane, as any host line.
    s.ui.push_about("alice", &Line::HostInfo(&"about me"));
    s.ui.push_about("", &Line::HostInfo(&"about nobody"));
    s.ui.event(&TermEvent::Key(KeyEvent::new(
        KeyCode::Char('1'),
        KeyModifiers::ALT,
    )));
    let all = text(&mut s).join("\n");
    assert!(
        all.contains("[SYS] about me") && all.contains("[SYS] about nobody"),
        "{all}"
    );
}
