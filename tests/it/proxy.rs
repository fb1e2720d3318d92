//! A TCP proxy on loopback that a test can cut, to partition a process from
//! the API server for real: after [`TcpProxy::cut`], every connection, open
//! or new, stays open and silent, like a network that drops packets.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy owns: its tasks, and the sockets it holds open once cut.
#[derive(Default)]
struct Owned {
    tasks: Vec<JoinHandle<()>>,
    silent: Vec<TcpStream>,
}

/// Forwards a loopback port to an upstream address until cut; stops on drop.
pub struct TcpProxy {
    /// The address to connect to instead of the upstream.
    pub address: std::net::SocketAddr,
    cut: watch::Sender<bool>,
    owned: Arc<Mutex<Owned>>,
}

fn lock(owned: &Mutex<Owned>) -> std::sync::MutexGuard<'_, Owned> {
    owned.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TcpProxy {
    /// Starts forwarding to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding the proxy");
        let address = listener.local_addr().expect("proxy address");
        let (cut, cut_seen) = watch::channel(false);
        let owned: Arc<Mutex<Owned>> = Arc::default();
        let accepting = owned.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let connection = forward(client, upstream.clone(), cut_seen.clone(), accepting.clone());
                let task = tokio::spawn(connection);
                let mut owned = lock(&accepting);
                owned.tasks.retain(|t| !t.is_finished());
                owned.tasks.push(task);
            }
        });
        lock(&owned).tasks.push(accept);
        Self { address, cut, owned }
    }

    /// A proxy to the tests' API server, and a kubeconfig that goes through it.
    pub async fn to_api_server() -> (Self, std::path::PathBuf) {
        let proxy = Self::start(crate::support::api_server_address()).await;
        let kubeconfig = crate::support::kubeconfig_file(None, Some(&format!("https://{}", proxy.address)));
        (proxy, kubeconfig)
    }

    /// Partitions everything behind the proxy from now on.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Heals the partition for new connections; those held stay silent.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// Copies both ways until the proxy is cut; then holds both ends open, unread.
async fn forward(mut client: TcpStream, upstream: String, mut cut: watch::Receiver<bool>, owned: Arc<Mutex<Owned>>) {
    if *cut.borrow() {
        return lock(&owned).silent.push(client);
    }
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {
            let mut owned = lock(&owned);
            owned.silent.push(client);
            owned.silent.push(server);
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        let mut owned = lock(&self.owned);
        for task in owned.tasks.drain(..) {
            task.abort();
        }
        owned.silent.clear();
    }
}
