//! A real OpenLDAP `slapd` per test: its own temp directory (a `slapd.conf`, an mdb
//! database seeded with `slapadd`), its own certificate from a private CA, LDAPS and
//! StartTLS on free loopback ports, and an `ldapi://` socket the helpers administer it
//! through (`ldapmodify` as the rootdn). `./scripts/test` installs `slapd` and
//! `ldap-utils`; without them the tests fail, they are never skipped. Public so a bench can
//! start one too.
//!
//! The tree (`dc=example,dc=org`):
//! - `ou=people`: `alice` (in `cn=staff`), `carol` (in `cn=admins`), `dave` (in no mapped
//!   group), `locked` (in `cn=staff`, disabled by the ppolicy overlay:
//!   `pwdAccountLockedTime: 000001010000Z` locks it for good; the default policy sets
//!   `pwdLockout: TRUE`, so slapd answers its binds `invalidCredentials` like a wrong
//!   password) and `admin` (the name of the TestApp's local admin);
//! - `ou=groups`: `cn=admins` → role `admin`, `cn=staff` → role `editor` (both
//!   `groupOfNames`, each with a placeholder member since `member` is required);
//! - `ou=services`: `cn=rampart`, the service account the provider binds as.
//!
//! Anonymous clients may only bind; authenticated ones read everything but passwords.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_config::{LdapConfig, LdapRoleMap, LdapTransport};
use rampart_types::RoleName;
use secrecy::SecretString;
use tempfile::TempDir;

pub const SUFFIX: &str = "dc=example,dc=org";
pub const SERVICE_DN: &str = "cn=rampart,ou=services,dc=example,dc=org";
/// The service account's password (what `RAMPART_LDAP_BIND_PASSWORD` would hold).
pub const SERVICE_PASSWORD: &str = "Svc-Bind-Canary-Pa55-9123";
pub const ROOT_DN: &str = "cn=root,dc=example,dc=org";
const ROOT_PASSWORD: &str = "root-secret-not-for-rampart";
pub const ADMINS_GROUP: &str = "cn=admins,ou=groups,dc=example,dc=org";
pub const STAFF_GROUP: &str = "cn=staff,ou=groups,dc=example,dc=org";
/// Every seeded person's directory password is `<uid>` followed by this.
pub const PASSWORD_SUFFIX: &str = "-Dir3ctory-Pass!";

/// The directory password of a seeded person.
pub fn password_of(uid: &str) -> String {
    format!("{uid}{PASSWORD_SUFFIX}")
}

/// The DN of a person in `ou=people`.
pub fn person_dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{SUFFIX}")
}

pub struct LdapServer {
    pub ldaps_port: u16,
    /// Plain LDAP port: StartTLS (or, with `allow_insecure`, clear).
    pub ldap_port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl LdapServer {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("slapd").tempdir().expect("slapd dir");
        write_certificates(dir.path());
        std::fs::create_dir(dir.path().join("db")).expect("db dir");
        std::fs::write(dir.path().join("slapd.conf"), slapd_conf(dir.path())).expect("slapd.conf");
        std::fs::write(dir.path().join("seed.ldif"), seed_ldif()).expect("seed");
        let out = Command::new(binary("slapadd"))
            .arg("-f")
            .arg(dir.path().join("slapd.conf"))
            .arg("-l")
            .arg(dir.path().join("seed.ldif"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run slapadd: {e}; run ./scripts/test, which installs slapd"));
        assert!(out.status.success(), "slapadd: {}", String::from_utf8_lossy(&out.stderr));
        let mut server = Self { ldaps_port: free_port(), ldap_port: free_port(), dir, child: None };
        server.resume();
        server
    }

    /// The CA that signed the server's certificate (PEM).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing this server holds (PEM).
    pub fn other_ca_cert(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// `rampart.toml` lines that log unknown names in through this directory at `url`
    /// (`[auth] method = "ldap"`, `[auth.ldap]` with the seeded groups mapped to roles);
    /// `extra` goes into the `[auth.ldap]` table. The bind password is not in it: pass
    /// `SERVICE_PASSWORD` as `RAMPART_LDAP_BIND_PASSWORD`.
    pub fn config_toml(&self, url: &str, extra: &str) -> String {
        format!(
            "[auth]\nmethod = \"ldap\"\n[auth.ldap]\nurl = \"{url}\"\n{extra}\nca_cert = \"{ca}\"\n\
             bind_dn = \"{SERVICE_DN}\"\nuser_base = \"ou=people,{SUFFIX}\"\ngroup_base = \"ou=groups,{SUFFIX}\"\n\
             [[auth.ldap.role_map]]\ngroup = \"{ADMINS_GROUP}\"\nrole = \"admin\"\n\
             [[auth.ldap.role_map]]\ngroup = \"{STAFF_GROUP}\"\nrole = \"editor\"\n",
            ca = self.ca_cert().display()
        )
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    pub fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `[auth.ldap]` for this server over LDAPS: `cn=admins` → `admin`, `cn=staff` →
    /// `editor`, no default role, short timeouts.
    pub fn config(&self) -> LdapConfig {
        LdapConfig {
            url: self.ldaps_url(),
            transport: LdapTransport::Ldaps,
            ca_cert: Some(self.ca_cert()),
            bind_dn: SERVICE_DN.to_owned(),
            bind_password: SecretString::from(SERVICE_PASSWORD),
            user_base: format!("ou=people,{SUFFIX}"),
            user_filter: "(&(objectClass=inetOrgPerson)(uid={username}))".to_owned(),
            group_base: format!("ou=groups,{SUFFIX}"),
            group_filter: "(&(objectClass=groupOfNames)(member={dn}))".to_owned(),
            role_map: vec![
                LdapRoleMap { group: ADMINS_GROUP.to_owned(), role: RoleName::parse("admin").expect("role") },
                LdapRoleMap { group: STAFF_GROUP.to_owned(), role: RoleName::parse("editor").expect("role") },
            ],
            default_role: None,
            connect_timeout_secs: 2,
            operation_timeout_secs: 2,
            max_connections: 8,
        }
    }

    /// The same over `ldap://` with StartTLS.
    pub fn starttls_config(&self) -> LdapConfig {
        LdapConfig { url: self.ldap_url(), transport: LdapTransport::StartTls, ..self.config() }
    }

    /// Kills the server (SIGKILL) and waits until it is gone; its data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server (again) on the same ports and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let urls =
            format!("ldaps://127.0.0.1:{}/ ldap://127.0.0.1:{}/ {}", self.ldaps_port, self.ldap_port, self.ldapi());
        let child = Command::new(binary("slapd"))
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-h", &urls, "-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start slapd: {e}; run ./scripts/test, which installs slapd"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while [self.ldaps_port, self.ldap_port].iter().any(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_err())
        {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("slapd exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "slapd did not listen on {} and {}", self.ldaps_port, self.ldap_port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ldapi(&self) -> String {
        let path = self.dir.path().join("ldapi").display().to_string();
        format!("ldapi://{}", path.replace('/', "%2F"))
    }

    /// Applies LDIF changes as the directory's root (through `ldapmodify`).
    pub fn modify(&self, ldif: &str) {
        use std::io::Write;
        let mut child = Command::new(binary("ldapmodify"))
            .args(["-H", &self.ldapi(), "-x", "-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ldapmodify: {e}; run ./scripts/test, which installs ldap-utils"));
        child.stdin.take().expect("stdin").write_all(ldif.as_bytes()).expect("ldif");
        let out = child.wait_with_output().expect("ldapmodify");
        assert!(out.status.success(), "ldapmodify: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn add_member(&self, group_dn: &str, uid: &str) {
        self.modify(&format!("dn: {group_dn}\nchangetype: modify\nadd: member\nmember: {}\n", person_dn(uid)));
    }

    pub fn remove_member(&self, group_dn: &str, uid: &str) {
        self.modify(&format!("dn: {group_dn}\nchangetype: modify\ndelete: member\nmember: {}\n", person_dn(uid)));
    }

    /// A person with `password`; `uid` is written as given (an LDIF value, base64 so any
    /// character can be tested).
    pub fn add_person(&self, uid: &str, password: &str) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        self.modify(&format!(
            "dn:: {}\nchangetype: add\nobjectClass: inetOrgPerson\nuid:: {}\ncn: person\nsn: person\nuserPassword:: {}\n",
            b64(&format!("uid={},ou=people,{SUFFIX}", rampart_ldap::dn_value(uid))),
            b64(uid),
            b64(password)
        ));
    }
}

impl Drop for LdapServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn binary(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// A private CA, the server's certificate for 127.0.0.1 and localhost signed by it, and an
/// unrelated CA (for the "wrong CA" test).
fn write_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "rampart test LDAP CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
    server.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    server.distinguished_name.push(DnType::CommonName, "localhost");
    let server_cert = server.signed_by(&key, &ca_cert, &ca_key).expect("server cert");
    let other_key = KeyPair::generate().expect("other key");
    let mut other = CertificateParams::new(Vec::<String>::new()).expect("other params");
    other.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    other.distinguished_name.push(DnType::CommonName, "some other CA");
    let other_cert = other.self_signed(&other_key).expect("other cert");
    for (name, pem) in [
        ("ca.pem", ca_cert.pem()),
        ("server.pem", server_cert.pem()),
        ("server.key", key.serialize_pem()),
        ("other-ca.pem", other_cert.pem()),
    ] {
        std::fs::write(dir.join(name), pem).expect("write pem");
    }
}

fn slapd_conf(dir: &Path) -> String {
    let d = dir.display();
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
database mdb
maxsize 16777216
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {d}/db
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{SUFFIX}"
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"#
    )
}

fn seed_ldif() -> String {
    let mut out = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{SUFFIX}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: ou=policies,{SUFFIX}\nobjectClass: organizationalUnit\nou: policies\n\n\
         dn: cn=default,ou=policies,{SUFFIX}\nobjectClass: device\nobjectClass: pwdPolicy\ncn: default\n\
         pwdAttribute: userPassword\npwdLockout: TRUE\n\n\
         dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: rampart\n\
         userPassword: {SERVICE_PASSWORD}\n\n"
    );
    for uid in ["alice", "carol", "dave", "locked", "admin"] {
        out.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\nuserPassword: {}\n",
            person_dn(uid),
            password_of(uid)
        ));
        if uid == "locked" {
            out.push_str("pwdAccountLockedTime: 000001010000Z\n");
        }
        out.push('\n');
    }
    for (group, members) in [(ADMINS_GROUP, vec!["carol"]), (STAFF_GROUP, vec!["alice", "locked"])] {
        let cn = group.split(',').next().unwrap_or_default().trim_start_matches("cn=");
        out.push_str(&format!("dn: {group}\nobjectClass: groupOfNames\ncn: {cn}\nmember: cn=placeholder,{SUFFIX}\n"));
        for m in members {
            out.push_str(&format!("member: {}\n", person_dn(m)));
        }
        out.push('\n');
    }
    out
}
