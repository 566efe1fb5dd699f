//! A TCP relay on loopback between one instance and one peer (an etcd node or the broker),
//! which a scenario cuts and restores: how one instance is isolated from etcd or the broker
//! while the others keep them. A cut closes every relayed connection and refuses new ones
//! (accepted, then closed at once) until it is restored.

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Relay {
    pub port: u16,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    /// A relay from a free loopback port to `upstream`.
    pub async fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *cut_rx.borrow() {
                    continue; // dropped: closed at once
                }
                let mut cut = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut out) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = out.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                        _ = cut.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        Relay { port, cut, task }
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
