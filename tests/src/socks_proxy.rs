//! A SOCKS5 proxy for the tests (RFC 1928, with RFC 1929 user/password), counting what passes
//! through it. It makes its outgoing connections from [`PROXY_SOURCE`], so a mock server that
//! accepts only that address proves the bot reached it through the proxy and never directly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// The loopback address the proxy connects from (the bot connects from 127.0.0.1).
pub const PROXY_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// What passed through the proxy.
#[derive(Debug, Default)]
pub struct Counters {
    /// Tunnels opened to a target.
    pub tunnels: AtomicUsize,
    /// Logins refused (wrong user or password, or none offered when one is required).
    pub auth_failures: AtomicUsize,
    /// Bytes from the client to the targets.
    pub bytes_up: AtomicU64,
    /// Bytes from the targets to the client.
    pub bytes_down: AtomicU64,
    /// Each tunnel's target as asked for: `name:<host>:<port>` when the client left the name
    /// to the proxy, `ip:<addr>` when it sent an address.
    pub targets: Mutex<Vec<String>>,
}

/// A running proxy on a loopback port; [`SocksProxy::kill`] ends it and every tunnel at once.
pub struct SocksProxy {
    port: u16,
    credentials: Option<(String, String)>,
    counters: Arc<Counters>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Drop for SocksProxy {
    fn drop(&mut self) {
        self.kill();
    }
}

impl SocksProxy {
    /// A proxy on a free port; with `credentials`, only that user and password get in.
    pub async fn start(credentials: Option<(&str, &str)>) -> SocksProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let mut proxy = SocksProxy {
            port: listener.local_addr().unwrap().port(),
            credentials,
            counters: Arc::new(Counters::default()),
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.serve(listener);
        proxy
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What passed through so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The targets asked for so far.
    pub fn targets(&self) -> Vec<String> {
        self.counters.targets.lock().unwrap().clone()
    }

    /// The proxy dies: its listener and every open tunnel close.
    pub fn kill(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Starts again on the same port (after [`SocksProxy::kill`]), with the same counters.
    pub async fn restart(&mut self) {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                // The old socket may linger for a moment after the abort.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let counters = self.counters.clone();
        let credentials = self.credentials.clone();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counters = counters.clone();
                let credentials = credentials.clone();
                let tunnel = tokio::spawn(async move {
                    let _ = tunnel(client, credentials, counters).await;
                });
                tasks.lock().unwrap().push(tunnel);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }
}

async fn tunnel(
    mut client: TcpStream,
    credentials: Option<(String, String)>,
    counters: Arc<Counters>,
) -> std::io::Result<()> {
    // Greeting: version 5 and the methods the client offers.
    let mut head = [0u8; 2];
    client.read_exact(&mut head).await?;
    if head[0] != 5 {
        return Ok(());
    }
    let mut methods = vec![0u8; usize::from(head[1])];
    client.read_exact(&mut methods).await?;
    let wanted = if credentials.is_some() { 2 } else { 0 };
    if !methods.contains(&wanted) {
        if credentials.is_some() {
            counters.auth_failures.fetch_add(1, Ordering::SeqCst);
        }
        client.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    client.write_all(&[5, wanted]).await?;
    if let Some((user, password)) = credentials {
        let mut version = [0u8; 2];
        client.read_exact(&mut version).await?;
        let mut given_user = vec![0u8; usize::from(version[1])];
        client.read_exact(&mut given_user).await?;
        let len = client.read_u8().await?;
        let mut given_password = vec![0u8; usize::from(len)];
        client.read_exact(&mut given_password).await?;
        if given_user != user.as_bytes() || given_password != password.as_bytes() {
            counters.auth_failures.fetch_add(1, Ordering::SeqCst);
            client.write_all(&[1, 1]).await?;
            return Ok(());
        }
        client.write_all(&[1, 0]).await?;
    }
    // The request: CONNECT to an IPv4 address, a name or an IPv6 address.
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    if request[0] != 5 || request[1] != 1 {
        client.write_all(&[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(());
    }
    let (target, label) = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            let port = client.read_u16().await?;
            let addr = SocketAddr::from((ip, port));
            (Some(addr), format!("ip:{addr}"))
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            let port = client.read_u16().await?;
            let addr = SocketAddr::from((ip, port));
            (Some(addr), format!("ip:{addr}"))
        }
        3 => {
            let len = client.read_u8().await?;
            let mut name = vec![0u8; usize::from(len)];
            client.read_exact(&mut name).await?;
            let port = client.read_u16().await?;
            let name = String::from_utf8_lossy(&name).into_owned();
            // The proxy resolves the name, to IPv4 only (it connects from an IPv4 address).
            let resolved = tokio::net::lookup_host((name.as_str(), port))
                .await
                .ok()
                .and_then(|mut addrs| addrs.find(SocketAddr::is_ipv4));
            (resolved, format!("name:{name}:{port}"))
        }
        _ => return Ok(()),
    };
    counters.targets.lock().unwrap().push(label);
    let upstream = match target {
        Some(addr) if addr.is_ipv4() => {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(PROXY_SOURCE, 0))?;
            socket.connect(addr).await.ok()
        }
        _ => None,
    };
    let Some(upstream) = upstream else {
        // Host unreachable.
        client.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
        return Ok(());
    };
    counters.tunnels.fetch_add(1, Ordering::SeqCst);
    client.write_all(&[5, 0, 0, 1, 127, 0, 0, 2, 0, 0]).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let up_counters = counters.clone();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = client_read.read(&mut buf).await?;
            if n == 0 {
                return up_write.shutdown().await;
            }
            up_write.write_all(&buf[..n]).await?;
            up_counters.bytes_up.fetch_add(n as u64, Ordering::SeqCst);
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = up_read.read(&mut buf).await?;
            if n == 0 {
                return client_write.shutdown().await;
            }
            client_write.write_all(&buf[..n]).await?;
            counters.bytes_down.fetch_add(n as u64, Ordering::SeqCst);
        }
    };
    let _ = tokio::try_join!(up, down);
    Ok(())
}
