//! [`RedisServer`]: a redis-server of the demo's own, on a free port of 127.0.0.1, stopped
//! when dropped; [`reach`]: a user's Redis, checked before a program relies on it.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server started by this process, with nothing saved to disk.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Child,
}

impl RedisServer {
    /// What to tell a user whose machine has no redis-server.
    pub const HOW_TO_GET_ONE: &'static str = "redis-server is not on PATH: install it \
        (Debian and Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`), \
        or run one and pass its URL";

    /// Starts `redis-server` from `PATH` on a free port and waits (up to 10 s) until it
    /// answers. [`io::ErrorKind::NotFound`] if there is none.
    pub fn start() -> io::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => io::Error::new(e.kind(), Self::HOW_TO_GET_ONE),
                _ => e,
            })?;
        let mut server = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers_ping() {
            if Instant::now() > deadline || server.child.try_wait()?.is_some() {
                return Err(io::Error::other("redis-server did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    /// Its URL, `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
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
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Redis at `url` (a user's `--redis`), once it answered a `PING` within two seconds,
/// or what went wrong, in words that say what to do: a program checks it once at its start,
/// so that a mistyped URL or port is an error at once, not a silent wait by the failure
/// policy (which is for a Redis lost in the middle of a run).
pub async fn reach(url: &str) -> Result<redis::Client, String> {
    let client = redis::Client::open(url).map_err(|error| {
        format!("--redis takes a URL such as redis://127.0.0.1:6379/, not {url:?}: {error}")
    })?;
    let ping = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(error)) => Err(format!(
            "no Redis answers at {url} ({error}); start one (`redis-server --save '' \
             --appendonly no`, with `--port N` for another port than 6379) or leave out --redis"
        )),
        Err(_) => Err(format!("Redis at {url} did not answer a PING within 2 s")),
    }
}
