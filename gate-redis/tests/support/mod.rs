//! A redis-server of the test binary's own, on a free port of 127.0.0.1, gone when the test
//! binary exits.
//!
//! Each test uses its own key, so tests sharing the server share no state.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A redis-server started by this process.
#[derive(Debug)]
pub struct Server {
    port: u16,
    /// The watcher of the running server, reaped when the server stops.
    watcher: Mutex<Option<Child>>,
}

/// The server this test binary shares between its tests, started on first use.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start)
}

impl Server {
    /// Starts a server on a free port and waits until it answers `PING`.
    ///
    /// The server runs under a small shell watcher that stops it when this process exits
    /// (however it exits), so no server outlives its test binary.
    pub fn start() -> Self {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            listener.local_addr().unwrap().port()
        };
        let server = Self {
            port,
            watcher: Mutex::new(None),
        };
        server.launch();
        server
    }

    fn launch(&self) {
        let found = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status();
        assert!(
            found.is_ok_and(|status| status.success()),
            "redis-server is not on PATH; the gate-redis tests need it: apt-get install redis-server"
        );
        let watcher = format!(
            "redis-server \"$@\" & r=$!; trap 'kill $r 2>/dev/null' EXIT; \
             while kill -0 {parent} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.2; done",
            parent = std::process::id()
        );
        let watcher = Command::new("sh")
            .args(["-c", &watcher, "sh"])
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        *self.watcher.lock().unwrap() = Some(watcher);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A client of the server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    /// A plain connection, for reading the limit's keys.
    pub fn connection(&self) -> redis::Connection {
        self.client().get_connection().unwrap()
    }

    /// Stops the server (as a crash would: nothing saved) and waits until its port refuses.
    pub fn stop(&self) {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.write_all(b"SHUTDOWN NOSAVE\r\n");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(mut watcher) = self.watcher.lock().unwrap().take() {
            // It exits within 0.2 s of the server.
            let _ = watcher.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&self) {
        self.launch();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A key no other test uses.
pub fn key(test: &str) -> String {
    format!("{test}-{}", std::process::id())
}

/// Polls `condition` every 10 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Permits of `key` held in Redis right now.
pub fn held(server: &Server, key: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(format!("gate:{{{key}}}:held"))
        .query(&mut server.connection())
        .unwrap()
}

/// A holder that crashes with its permit: a limiter that `build` makes on a runtime of its
/// own takes one permit and forgets it, then the runtime (and so every renewal and the
/// release) ends with the permit still held in Redis.
pub fn crash_holding_a_permit<L: gate_core::Admission>(build: impl FnOnce() -> L + Send + 'static) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let limiter = build();
            std::mem::forget(limiter.admit().await.unwrap());
        });
    })
    .join()
    .unwrap();
}
