//! `[notify]`: channels and routes read with their secrets, every mistake named.

use crate::config::Config;
use crate::notify::{ChannelKind, EmailTls};

const STATION: &str = "[[station]]\nid = \"s1\"\ntags = { district = \"north\" }\n";

fn env(k: &str) -> Option<String> {
    match k {
        "WH" => Some("webhook-secret".into()),
        "MU" => Some("mailer".into()),
        "MP" => Some("mail-password".into()),
        _ => None,
    }
}

#[test]
fn channels_and_routes_are_read_with_their_secrets() {
    let text = format!(
        r#"
        [notify]
        group_wait_s = 5
        flood_threshold = 20
        [[notify.webhook]]
        name = "oncall"
        url = "https://hooks.example.com/heat"
        secret_env = "WH"
        [[notify.email]]
        name = "ops"
        server = "mail.example.com"
        user_env = "MU"
        password_env = "MP"
        from = "heatgrid <heatgrid@example.com>"
        to = ["ops@example.com", "Duty <duty@example.com>"]
        [[notify.route]]
        severity = ["critical", "major"]
        to = ["oncall"]
        escalate_after_min = 15
        escalate_to = ["ops"]
        [[notify.route]]
        tags = {{ district = "north" }}
        kind = ["stale", "return_high"]
        to = ["ops"]
        cleared = false
        {STATION}"#
    );
    let c = Config::parse(&text, &env).unwrap_or_else(|e| panic!("{e:#?}"));
    let n = c.notify.unwrap();
    assert_eq!(n.flood_threshold, 20);
    assert_eq!(n.group_wait.as_secs(), 5);
    let ChannelKind::Webhook(w) = &n.channels[0].kind else {
        panic!()
    };
    assert_eq!(w.secret.as_deref(), Some("webhook-secret"));
    let ChannelKind::Email(e) = &n.channels[1].kind else {
        panic!()
    };
    assert_eq!((e.port, e.tls), (587, EmailTls::StartTls));
    assert_eq!(
        e.credentials,
        Some(("mailer".into(), "mail-password".into()))
    );
    assert!(
        !format!("{e:?}{w:?}").contains("password"),
        "secrets stay out of logs"
    );
    assert_eq!(n.routes[0].to, vec![0]);
    assert_eq!(n.routes[0].escalate_to, vec![1]);
    assert_eq!(n.routes[0].escalate_after.unwrap().as_secs(), 900);
    assert_eq!(n.routes[1].kinds.len(), 2);
    assert!(!n.routes[1].cleared);
}

#[test]
fn every_mistake_is_named_with_its_place() {
    let text = format!(
        r#"
        [notify]
        [[notify.webhook]]
        name = "a"
        url = "hooks.example.com"
        secret_env = "NOPE"
        [[notify.email]]
        name = "a"
        server = "mail.example.com"
        tls = "ssl"
        from = "not an address"
        to = []
        user_env = "MU"
        [[notify.route]]
        to = ["b"]
        escalate_after_min = 5
        {STATION}"#
    );
    let errs = Config::parse(&text, &env).unwrap_err().join("\n");
    for needle in [
        "notify.webhook[0] \"a\".url: \"hooks.example.com\" is not an http(s) URL",
        "notify.webhook[0] \"a\".secret_env: environment variable NOPE is not set",
        "notify.email[0] \"a\".name: another channel has this name",
        "notify.email[0] \"a\".tls: \"ssl\" is not",
        "notify.email[0] \"a\": not a mail address: \"not an address\"",
        "notify.email[0] \"a\".to: name at least one recipient",
        "notify.email[0] \"a\": give both user_env and password_env",
        "notify.route[0].to: no channel is named \"b\"",
        "notify.route[0]: give both escalate_after_min and escalate_to",
    ] {
        assert!(errs.contains(needle), "missing {needle:?} in:\n{errs}");
    }
    // A password in the clear to a remote server is refused.
    let text = format!(
        "[[notify.email]]\nname = \"m\"\nserver = \"mail.example.com\"\ntls = \"none\"\n\
         user_env = \"MU\"\npassword_env = \"MP\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n\
         [[notify.route]]\nto = [\"m\"]\n{STATION}"
    );
    let errs = Config::parse(&text, &env).unwrap_err().join("\n");
    assert!(errs.contains("a password is sent only over TLS"), "{errs}");
    // Channels that nothing is routed to.
    let text = format!("[[notify.webhook]]\nname = \"w\"\nurl = \"http://h/\"\n{STATION}");
    let errs = Config::parse(&text, &env).unwrap_err().join("\n");
    assert!(errs.contains("no [[notify.route]]"), "{errs}");
}
