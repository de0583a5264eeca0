//! IP address → company (B2B visitor profiles): a longest-prefix map built from the YAML list
//! and/or a CSV file of `cidr,company`.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

/// One bad line of the CSV file (1-based) or entry of the YAML list (0-based index).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct CompanyError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct CompanyMap {}

impl CompanyMap {
    pub fn new(entries: Vec<(IpNet, String)>) -> Self {
        let _ = entries;
        todo!()
    }

    /// The company of the most specific network containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&str> {
        let _ = ip;
        todo!()
    }

    pub fn len(&self) -> usize {
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a CSV file of `cidr,company` lines.
pub fn load_csv(path: &Path) -> Result<Vec<(IpNet, String)>, CompanyError> {
    let _ = path;
    todo!()
}

/// Parses one CIDR (or bare address = a /32 or /128).
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let _ = s;
    todo!()
}
