//! Private test helpers: a throwaway MariaDB server and a gate in front of it.
//! (To be replaced by keyshift-testkit's TestMysqld once it lands.)
//! [`cluster`] has a real sharded cluster behind the topo-driven gate.
#![allow(dead_code)]

pub mod cluster;

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyshift_gate::{
    BackendConfig, Gate, GateConfig, PassthroughFactory, Pool, PoolConfig, StaticUsers,
};

pub const USER: &str = "u";
pub const PASS: &str = "p";

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A MariaDB server in a temp dir, killed and deleted on drop (also on panic).
pub struct Mysqld {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Mysqld {
    pub fn start() -> Mysqld {
        let dir = tempfile::Builder::new()
            .prefix("ks-gate-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        // a private tmpdir: concurrent bootstraps collide on temp table names in /tmp
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let st = Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--auth-root-authentication-method=normal")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("mariadb-install-db");
        assert!(st.success(), "mariadb-install-db failed");
        let port = free_port();
        let mut m = Mysqld {
            port,
            dir,
            child: None,
        };
        m.spawn();
        m.sql("CREATE USER 'u'@'127.0.0.1' IDENTIFIED BY 'p'; GRANT ALL ON *.* TO 'u'@'127.0.0.1'; CREATE DATABASE IF NOT EXISTS test;");
        m
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("s.sock")
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("err.log")).unwrap();
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg("--user=root")
            .arg(format!("--datadir={}", self.data().display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!(
                "--tmpdir={}",
                self.dir.path().join("tmp").display()
            ))
            .arg("--skip-name-resolve")
            .arg("--max-allowed-packet=64M")
            .arg("--innodb-buffer-pool-size=64M")
            .arg("--skip-log-bin")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mariadbd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.socket().exists()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mariadbd did not start");
    }

    /// Runs SQL as root over the socket.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("-uroot")
            .arg("-N")
            .arg("-e")
            .arg(sql)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "sql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Mysqld {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A passthrough gate on a port-0 listener; stops when dropped.
pub struct TestGate {
    pub port: u16,
    pub pool: Pool,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for TestGate {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn start_gate(
    backend: &Mysqld,
    db: Option<&str>,
    config: GateConfig,
    read_timeout: Duration,
) -> TestGate {
    let mut bc = BackendConfig::new(backend.addr(), USER, PASS);
    bc.db = db.map(String::from);
    bc.read_timeout = read_timeout;
    bc.connect_timeout = Duration::from_secs(2);
    let pool = Pool::new(bc, PoolConfig::default());
    let users = StaticUsers::new()
        .with_user(USER, PASS)
        .with_user("other", "secret2");
    let gate = Gate::new(
        config,
        Arc::new(users),
        Arc::new(PassthroughFactory::new(pool.clone())),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(gate.serve(listener));
    TestGate { port, pool, task }
}

pub fn opts(port: u16, user: &str, pass: &str, db: Option<&str>) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(pass))
        .db_name(db)
        .prefer_socket(false)
        .into()
}

/// A minimal protocol client for checks that real clients cannot express
/// (status flags, re-execution without types, raw commands).
pub struct RawClient {
    pub r: keyshift_gate::packet::PacketReader<tokio::net::tcp::OwnedReadHalf>,
    pub w: keyshift_gate::packet::PacketWriter<tokio::net::tcp::OwnedWriteHalf>,
    pub scramble: Vec<u8>,
    pub deprecate_eof: bool,
}

pub const CAP_BASE: u32 = 0x0000_0001
    | 0x0000_0004
    | 0x0000_0200
    | 0x0000_2000
    | 0x0000_8000
    | 0x0002_0000
    | 0x0004_0000
    | 0x0008_0000
    | 0x0020_0000;
pub const CAP_DEPRECATE_EOF: u32 = 0x0100_0000;

impl RawClient {
    /// Reads the server greeting only.
    pub async fn greet(port: u16) -> (RawClient, u8) {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.set_nodelay(true).unwrap();
        let (r, w) = s.into_split();
        let mut c = RawClient {
            r: keyshift_gate::packet::PacketReader::new(r, 1 << 30),
            w: keyshift_gate::packet::PacketWriter::new(w),
            scramble: Vec::new(),
            deprecate_eof: false,
        };
        let (seq, p) = c.r.read().await.unwrap();
        let mut rd = keyshift_gate::proto::Reader::new(p);
        assert_eq!(rd.u8().unwrap(), 10);
        rd.nul_str();
        rd.u32().unwrap();
        let mut s = rd.take(8).unwrap().to_vec();
        rd.skip(1 + 2 + 1 + 2 + 2 + 1 + 10).unwrap();
        s.extend_from_slice(rd.take(12).unwrap());
        c.scramble = s;
        (c, seq)
    }

    pub async fn connect(
        port: u16,
        user: &str,
        pass: &str,
        deprecate_eof: bool,
    ) -> Result<RawClient, Vec<u8>> {
        let (mut c, seq) = Self::greet(port).await;
        c.deprecate_eof = deprecate_eof;
        let caps = CAP_BASE | if deprecate_eof { CAP_DEPRECATE_EOF } else { 0 };
        let auth = mysql_common::scramble::scramble_native(&c.scramble, pass.as_bytes()).unwrap();
        let mut p = Vec::new();
        p.extend_from_slice(&caps.to_le_bytes());
        p.extend_from_slice(&(1u32 << 24).to_le_bytes());
        p.push(45);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(user.as_bytes());
        p.push(0);
        p.push(20);
        p.extend_from_slice(&auth);
        p.extend_from_slice(b"mysql_native_password\0");
        c.w.set_seq(seq + 1);
        c.w.write_packet(&p);
        c.w.flush().await.unwrap();
        let (_, resp) = c.r.read().await.unwrap();
        if resp[0] == 0 {
            Ok(c)
        } else {
            Err(resp.to_vec())
        }
    }

    pub async fn command(&mut self, cmd: u8, arg: &[u8]) {
        self.w.set_seq(0);
        let mut p = vec![cmd];
        p.extend_from_slice(arg);
        self.w.write_packet(&p);
        self.w.flush().await.unwrap();
    }

    pub async fn read(&mut self) -> Vec<u8> {
        self.r.read().await.unwrap().1.to_vec()
    }

    /// Reads a whole response; returns (all packets, status of the final OK/EOF if any).
    pub async fn response(&mut self) -> (Vec<Vec<u8>>, Option<u16>) {
        let mut pkts = Vec::new();
        let first = self.read().await;
        pkts.push(first.clone());
        match first[0] {
            0x00 => {
                let ok = keyshift_gate::proto::OkPacket::parse(
                    &first,
                    mysql_common::constants::CapabilityFlags::empty(),
                )
                .unwrap();
                return (pkts, Some(ok.status));
            }
            0xFF => return (pkts, None),
            _ => {}
        }
        let n = keyshift_gate::proto::Reader::new(&first).lenenc().unwrap();
        for _ in 0..n {
            pkts.push(self.read().await);
        }
        if !self.deprecate_eof {
            let eof = self.read().await;
            assert_eq!(eof[0], 0xFE);
            pkts.push(eof);
        }
        loop {
            let p = self.read().await;
            pkts.push(p.clone());
            if p[0] == 0xFE && p.len() < 0xFFFFFF {
                let status = if self.deprecate_eof {
                    keyshift_gate::proto::OkPacket::parse(
                        &p,
                        mysql_common::constants::CapabilityFlags::empty(),
                    )
                    .unwrap()
                    .status
                } else {
                    u16::from_le_bytes([p[3], p[4]])
                };
                return (pkts, Some(status));
            }
            if p[0] == 0xFF {
                return (pkts, None);
            }
        }
    }

    pub async fn query(&mut self, sql: &str) -> (Vec<Vec<u8>>, Option<u16>) {
        self.command(0x03, sql.as_bytes()).await;
        self.response().await
    }
}
