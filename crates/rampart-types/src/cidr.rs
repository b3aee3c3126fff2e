use std::fmt;
use std::net::IpAddr;

/// An address block such as `10.0.0.0/8` or `2001:db8::/32`; a bare address is a /32 or /128.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block")]
pub struct CidrError(pub String);

fn mask_v4(a: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        a & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(a: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        a & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        let err = || CidrError(s.chars().take(64).collect());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| err())?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(err());
        }
        Ok(Self::new(addr, prefix))
    }

    /// The block of `prefix` bits containing `addr`.
    pub fn new(addr: IpAddr, prefix: u8) -> Self {
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(mask_v4(u32::from(a), prefix.min(32)).into()),
            IpAddr::V6(a) => IpAddr::V6(mask_v6(u128::from(a), prefix.min(128)).into()),
        };
        Self { network, prefix }
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        // An IPv4-mapped IPv6 peer (::ffff:a.b.c.d) is the IPv4 client it stands for.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(*ip),
            v4 => *v4,
        };
        Self::new(ip, self.prefix).network == self.network && ip.is_ipv4() == self.network.is_ipv4()
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn blocks_contain_their_addresses_only() {
        let net = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(net.contains(&ip("10.1.200.3")));
        assert!(!net.contains(&ip("10.2.0.1")));
        assert!(net.contains(&ip("::ffff:10.1.0.9")), "mapped IPv4");
        let one = Cidr::parse("127.0.0.1").expect("cidr");
        assert!(one.contains(&ip("127.0.0.1")) && !one.contains(&ip("127.0.0.2")));
        let v6 = Cidr::parse("2001:db8::/32").expect("cidr");
        assert!(v6.contains(&ip("2001:db8:1::5")) && !v6.contains(&ip("2001:db9::1")));
        assert!(!v6.contains(&ip("10.1.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").expect("any").contains(&ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nope", "1.2.3.4/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
