//! IP address → company (B2B visitor profiles): a longest-prefix map built from the YAML list
//! and/or a CSV file of `cidr,company`.
//!
//! The map keeps, per address family, one hash table per prefix length that occurs in the
//! list (longest first). A lookup masks the address once per present length and stops at the
//! first hit, so its cost depends on the number of distinct prefix lengths (at most 33 + 129),
//! not on the number of networks: a lookup among 100k entries costs about as much as among ten.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Longest company name accepted, in characters.
pub const MAX_COMPANY_CHARS: usize = 200;

/// One bad line of the CSV file (1-based) or entry of the YAML list (0-based index).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct CompanyError {
    pub line: usize,
    pub reason: String,
}

/// Networks of one address family, grouped by prefix length.
#[derive(Debug, Clone, Default)]
struct Family {
    /// Sorted by prefix length, longest first, so the first hit is the most specific.
    levels: Vec<Level>,
}

#[derive(Debug, Clone)]
struct Level {
    prefix: u8,
    /// Network address (host bits zero, as an integer) → company.
    nets: HashMap<u128, String>,
}

#[derive(Debug, Clone, Default)]
pub struct CompanyMap {
    v4: Family,
    v6: Family,
}

impl CompanyMap {
    /// Builds the map. When the same network occurs more than once the later entry wins, so
    /// entries appended after others (say, a CSV file after the YAML list) override them. Host bits are ignored
    /// (`10.0.0.1/8` is `10.0.0.0/8`) and IPv4-mapped IPv6 networks count as IPv4.
    pub fn new(entries: Vec<(IpNet, String)>) -> Self {
        let mut v4: HashMap<u8, HashMap<u128, String>> = HashMap::new();
        let mut v6: HashMap<u8, HashMap<u128, String>> = HashMap::new();
        for (net, company) in entries {
            let net = canonical_net(net);
            let (table, key) = match net {
                IpNet::V4(n) => (&mut v4, u128::from(u32::from(n.network()))),
                IpNet::V6(n) => (&mut v6, u128::from(n.network())),
            };
            table
                .entry(net.prefix_len())
                .or_default()
                .insert(key, company);
        }
        CompanyMap {
            v4: Family::from_levels(v4),
            v6: Family::from_levels(v6),
        }
    }

    /// The company of the most specific network containing `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<&str> {
        match ip.to_canonical() {
            IpAddr::V4(a) => self.v4.lookup(u128::from(u32::from(a)), 32),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a), 128),
        }
    }

    /// The number of distinct networks.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Family {
    fn from_levels(levels: HashMap<u8, HashMap<u128, String>>) -> Self {
        let mut levels: Vec<Level> = levels
            .into_iter()
            .map(|(prefix, nets)| Level { prefix, nets })
            .collect();
        levels.sort_unstable_by_key(|level| std::cmp::Reverse(level.prefix));
        Family { levels }
    }

    /// `addr` is the address as an integer of `width` bits (32 or 128).
    fn lookup(&self, addr: u128, width: u8) -> Option<&str> {
        self.levels.iter().find_map(|level| {
            let key = mask(addr, width, level.prefix);
            level.nets.get(&key).map(String::as_str)
        })
    }

    fn len(&self) -> usize {
        self.levels.iter().map(|l| l.nets.len()).sum()
    }
}

/// Zeroes all but the top `prefix` bits of a `width`-bit address.
fn mask(addr: u128, width: u8, prefix: u8) -> u128 {
    let shift = u32::from(width.saturating_sub(prefix));
    // A shift by the full 128 bits (a ::/0 network) leaves nothing.
    addr.checked_shr(shift).map_or(0, |high| high << shift)
}

/// The network with its host bits zeroed, and an IPv4-mapped IPv6 network
/// (`::ffff:10.0.0.0/104`) as its IPv4 form (`10.0.0.0/8`), because addresses are looked up in
/// their canonical form and would otherwise never match it.
pub(crate) fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, n.prefix_len() - 96)
                .map(|n| IpNet::V4(n.trunc()))
                .unwrap_or(net),
            None => IpNet::V6(n.trunc()),
        },
        other => other.trunc(),
    }
}

/// Reads a CSV file of `cidr,company` lines.
///
/// Fields follow RFC 4180: a company containing commas is written in double quotes
/// (`"Acme, Inc."`), a quote inside one is doubled (`"The ""Best"" Co"`). Quoted fields may not
/// span lines (a company name has no line breaks). Blank lines and lines starting with `#` are
/// skipped, as is a first record of `cidr,company` (any case). A leading byte-order mark, as
/// spreadsheet exports write it, is ignored.
///
/// Errors name the 1-based line and what is wrong, never the line itself; a file that cannot be
/// read is reported as line 0.
pub fn load_csv(path: &Path) -> Result<Vec<(IpNet, String)>, CompanyError> {
    let text = std::fs::read_to_string(path).map_err(|e| CompanyError {
        line: 0,
        reason: format!("cannot read the file: {}", e.kind()),
    })?;
    parse_csv(&text)
}

/// The body of [`load_csv`], for text already in memory.
pub fn parse_csv(text: &str) -> Result<Vec<(IpNet, String)>, CompanyError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut first_record = true;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fail = |reason: String| CompanyError {
            line: index + 1,
            reason,
        };
        let fields = split_record(line).map_err(|r| fail(r.to_string()))?;
        if std::mem::take(&mut first_record) && is_header(&fields) {
            continue;
        }
        entries.push(parse_record(&fields).map_err(fail)?);
    }
    Ok(entries)
}

fn is_header(fields: &[String]) -> bool {
    matches!(fields, [a, b] if a.trim().eq_ignore_ascii_case("cidr")
        && b.trim().eq_ignore_ascii_case("company"))
}

fn parse_record(fields: &[String]) -> Result<(IpNet, String), String> {
    let [cidr, company] = fields else {
        return Err(format!(
            "expected 2 fields (cidr,company), found {}; quote a company name that contains commas",
            fields.len()
        ));
    };
    let net = parse_net(cidr).map_err(|r| format!("cidr: {r}"))?;
    let company = validate_company(company)?;
    Ok((net, company.to_string()))
}

/// The trimmed company name, if it is 1..=[`MAX_COMPANY_CHARS`] characters without control
/// characters (it ends up in reports and exports).
pub fn validate_company(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("empty company name".into());
    }
    if name.chars().count() > MAX_COMPANY_CHARS {
        return Err(format!(
            "company name longer than {MAX_COMPANY_CHARS} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("control character in company name".into());
    }
    Ok(name)
}

/// Splits one CSV line into its fields, unquoting quoted ones. Spaces around a quoted field are
/// allowed (`10.0.0.0/8, "Acme, Inc."`); an unquoted field is taken as is, quotes included.
fn split_record(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut rest = line;
    loop {
        let start = rest.trim_start_matches([' ', '\t']);
        let (field, after) = match start.strip_prefix('"') {
            Some(quoted) => {
                let (value, after) = read_quoted(quoted)?;
                (value, after.trim_start_matches([' ', '\t']))
            }
            None => {
                let end = rest.find(',').unwrap_or(rest.len());
                (rest[..end].to_string(), &rest[end..])
            }
        };
        fields.push(field);
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None if after.is_empty() => return Ok(fields),
            None => return Err("text after a closing quote"),
        }
    }
}

/// Reads a quoted field's content up to its closing quote (`""` is one quote); returns the
/// value and what follows the closing quote.
fn read_quoted(s: &str) -> Result<(String, &str), &'static str> {
    let mut value = String::new();
    let mut rest = s;
    loop {
        let quote = rest.find('"').ok_or("unterminated quoted field")?;
        value.push_str(&rest[..quote]);
        rest = &rest[quote + 1..];
        match rest.strip_prefix('"') {
            Some(next) => {
                value.push('"');
                rest = next;
            }
            None => return Ok((value, rest)),
        }
    }
}

/// Parses one CIDR (or bare address = a /32 or /128).
///
/// Host bits are accepted and cleared (`10.0.0.1/8` is `10.0.0.0/8`): lists are often written
/// with a host's address and its netmask, and the intent is plain. An IPv4-mapped IPv6 network
/// is returned as IPv4. Errors are short reasons that do not repeat the input.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty".into());
    }
    let (addr, prefix) = match s.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| "not an IP address".to_string())?;
    let net = match prefix {
        None => IpNet::from(addr),
        Some(p) => with_prefix(addr, p)?,
    };
    Ok(canonical_net(net))
}

fn with_prefix(addr: IpAddr, prefix: &str) -> Result<IpNet, String> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err("prefix length is not a number".into());
    }
    let max = match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    };
    let len: u8 = prefix
        .parse()
        .ok()
        .filter(|&len| len <= max)
        .ok_or_else(|| format!("prefix length over {max}"))?;
    let net = match addr {
        IpAddr::V4(a) => Ipv4Net::new(a, len).map(IpNet::V4),
        IpAddr::V6(a) => Ipv6Net::new(a, len).map(IpNet::V6),
    };
    net.map_err(|_| format!("prefix length over {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn net(s: &str) -> IpNet {
        parse_net(s).unwrap()
    }

    fn v4(a: &str) -> IpAddr {
        IpAddr::V4(a.parse::<Ipv4Addr>().unwrap())
    }

    fn v6(a: &str) -> IpAddr {
        IpAddr::V6(a.parse::<Ipv6Addr>().unwrap())
    }

    fn map(entries: &[(&str, &str)]) -> CompanyMap {
        CompanyMap::new(
            entries
                .iter()
                .map(|(n, c)| (net(n), c.to_string()))
                .collect(),
        )
    }

    #[test]
    fn longest_prefix_wins() {
        let m = map(&[
            ("10.0.0.0/8", "Big"),
            ("10.1.0.0/16", "Middle"),
            ("10.1.2.0/24", "Small"),
            ("10.1.2.3", "Host"),
        ]);
        assert_eq!(m.lookup(v4("10.9.9.9")), Some("Big"));
        assert_eq!(m.lookup(v4("10.1.9.9")), Some("Middle"));
        assert_eq!(m.lookup(v4("10.1.2.9")), Some("Small"));
        assert_eq!(m.lookup(v4("10.1.2.3")), Some("Host"));
        assert_eq!(m.lookup(v4("11.0.0.1")), None);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn order_of_entries_does_not_matter_for_specificity() {
        let m = map(&[("10.1.2.0/24", "Small"), ("10.0.0.0/8", "Big")]);
        assert_eq!(m.lookup(v4("10.1.2.3")), Some("Small"));
        assert_eq!(m.lookup(v4("10.2.0.0")), Some("Big"));
    }

    #[test]
    fn default_route_matches_everything_of_its_family() {
        let m = map(&[("0.0.0.0/0", "Any4"), ("::/0", "Any6")]);
        assert_eq!(m.lookup(v4("198.51.100.1")), Some("Any4"));
        assert_eq!(m.lookup(v6("2001:db8::1")), Some("Any6"));
    }

    #[test]
    fn v4_and_v6_are_separate() {
        let m = map(&[("2001:db8::/32", "Six"), ("2001:db8:1::/48", "SixSmall")]);
        assert_eq!(m.lookup(v6("2001:db8:ffff::1")), Some("Six"));
        assert_eq!(m.lookup(v6("2001:db8:1:2::3")), Some("SixSmall"));
        assert_eq!(m.lookup(v6("2001:db9::1")), None);
        // 32.1.13.184 is 0x20010db8, the same bits as the v6 network's prefix.
        assert_eq!(m.lookup(v4("32.1.13.184")), None);
    }

    #[test]
    fn mapped_v6_looks_up_as_v4() {
        let m = map(&[("192.0.2.0/24", "Doc")]);
        assert_eq!(m.lookup(v6("::ffff:192.0.2.7")), Some("Doc"));
    }

    #[test]
    fn mapped_v6_network_is_stored_as_v4() {
        assert_eq!(net("::ffff:10.0.0.0/104"), net("10.0.0.0/8"));
        let m = map(&[("::ffff:192.0.2.0/120", "Doc")]);
        assert_eq!(m.lookup(v4("192.0.2.7")), Some("Doc"));
    }

    #[test]
    fn duplicate_network_later_entry_wins() {
        let m = map(&[
            ("10.0.0.0/8", "First"),
            ("10.0.0.0/8", "Second"),
            ("10.0.0.1/8", "Third"),
        ]);
        assert_eq!(m.lookup(v4("10.0.0.1")), Some("Third"));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn empty_map() {
        let m = CompanyMap::default();
        assert!(m.is_empty());
        assert_eq!(m.lookup(v4("10.0.0.1")), None);
        assert!(CompanyMap::new(Vec::new()).is_empty());
    }

    #[test]
    fn parse_net_forms() {
        assert_eq!(net("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(net(" 10.0.0.1/8 ").to_string(), "10.0.0.0/8");
        assert_eq!(net("192.0.2.1").to_string(), "192.0.2.1/32");
        assert_eq!(net("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(net("2001:db8:1:2::/32").to_string(), "2001:db8::/32");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
    }

    #[test]
    fn parse_net_errors_do_not_echo_input() {
        for bad in [
            "",
            "nope",
            "10.0.0.0/",
            "10.0.0.0/x",
            "10.0.0.0/+8",
            "10.0.0.0/33",
            "2001:db8::/129",
            "10.0.0.0/8/8",
            "10.0.0.256",
            "10.0.0.0/999",
        ] {
            let reason = parse_net(bad).unwrap_err();
            assert!(bad.is_empty() || !reason.contains(bad), "{bad}: {reason}");
        }
        assert_eq!(
            parse_net("10.0.0.0/33").unwrap_err(),
            "prefix length over 32"
        );
        assert_eq!(parse_net("::/129").unwrap_err(), "prefix length over 128");
    }

    #[test]
    fn csv_plain_quoted_comments_and_header() {
        let text = "\u{feff}CIDR,Company\r\n\
                    # a comment\n\
                    \n\
                    10.0.0.0/8,Acme\n\
                    192.0.2.0/24,\"Acme, Inc.\"\n\
                    198.51.100.0/24, \"The \"\"Best\"\" Co\" \n\
                    2001:db8::/32,  Six Ltd  \n\
                    \x20  # indented comment\n";
        let entries = parse_csv(text).unwrap();
        let got: Vec<(String, &str)> = entries
            .iter()
            .map(|(n, c)| (n.to_string(), c.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("10.0.0.0/8".to_string(), "Acme"),
                ("192.0.2.0/24".to_string(), "Acme, Inc."),
                ("198.51.100.0/24".to_string(), "The \"Best\" Co"),
                ("2001:db8::/32".to_string(), "Six Ltd"),
            ]
        );
    }

    #[test]
    fn csv_header_only_skipped_as_first_record() {
        let err = parse_csv("10.0.0.0/8,Acme\ncidr,company\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.reason.starts_with("cidr:"), "{}", err.reason);
    }

    #[test]
    fn csv_quoted_cidr() {
        let entries = parse_csv("\"10.0.0.0/8\",Acme\n").unwrap();
        assert_eq!(entries[0].0, net("10.0.0.0/8"));
    }

    #[test]
    fn csv_bad_lines_report_line_numbers() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "# c\n10.0.0.0/8,Acme\nnot-a-net,Acme\n",
                3,
                "cidr: not an IP address",
            ),
            ("10.0.0.0/8\n", 1, "expected 2 fields"),
            ("10.0.0.0/8,Acme, Inc.\n", 1, "expected 2 fields"),
            ("10.0.0.0/8,\"Acme\n", 1, "unterminated quoted field"),
            ("10.0.0.0/8,\"Acme\"x\n", 1, "text after a closing quote"),
            ("\n\n10.0.0.0/8,   \n", 3, "empty company name"),
            ("10.0.0.0/8,A\u{7}B\n", 1, "control character"),
            ("10.0.0.0/33,Acme\n", 1, "cidr: prefix length over 32"),
        ];
        for (text, line, reason) in cases {
            let err = parse_csv(text).unwrap_err();
            assert_eq!(err.line, *line, "{text:?}");
            assert!(err.reason.starts_with(reason), "{text:?}: {}", err.reason);
            assert!(!err.reason.contains("Acme"), "{}", err.reason);
        }
    }

    #[test]
    fn company_length_limit() {
        let ok = "é".repeat(MAX_COMPANY_CHARS);
        assert_eq!(validate_company(&ok), Ok(ok.as_str()));
        let long = "x".repeat(MAX_COMPANY_CHARS + 1);
        assert!(validate_company(&long).is_err());
    }

    #[test]
    fn load_csv_reads_file_and_reports_io_errors() {
        let dir = std::env::temp_dir().join(format!("smproxy-company-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("companies.csv");
        std::fs::write(&path, "cidr,company\n10.0.0.0/8,\"Acme, Inc.\"\n").unwrap();
        let entries = load_csv(&path).unwrap();
        assert_eq!(entries, vec![(net("10.0.0.0/8"), "Acme, Inc.".to_string())]);

        let err = load_csv(&dir.join("missing.csv")).unwrap_err();
        assert_eq!(err.line, 0);
        assert!(err.reason.contains("not found"), "{}", err.reason);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hundred_thousand_entries() {
        // 60k v4 /24s (10.0.0.0/24, 10.0.1.0/24, ...), 40k v6 /48s and one wider /16.
        let mut entries = Vec::new();
        for i in 0u32..60_000 {
            let a = Ipv4Addr::from((10 << 24) | (i << 8));
            entries.push((IpNet::V4(Ipv4Net::new(a, 24).unwrap()), format!("c{i}")));
        }
        for i in 0u128..40_000 {
            let a = Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 80));
            entries.push((IpNet::V6(Ipv6Net::new(a, 48).unwrap()), format!("s{i}")));
        }
        entries.push((net("10.250.0.0/16"), "wide".to_string()));
        let m = CompanyMap::new(entries);
        assert_eq!(m.len(), 100_001);

        for i in (0u32..60_000).step_by(997) {
            let a = IpAddr::V4(Ipv4Addr::from((10 << 24) | (i << 8) | 77));
            assert_eq!(m.lookup(a), Some(format!("c{i}").as_str()));
        }
        for i in (0u128..40_000).step_by(991) {
            let a = IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 80) | 0xabc));
            assert_eq!(m.lookup(a), Some(format!("s{i}").as_str()));
        }
        // The last /24 is 10.234.95.0 (i = 59_999); the next one was never added.
        assert_eq!(m.lookup(v4("10.234.95.1")), Some("c59999"));
        assert_eq!(m.lookup(v4("10.234.96.1")), None);
        // No /24 lies inside 10.250.0.0/16 (i would be ≥ 64_000), so the /16 answers.
        assert_eq!(m.lookup(v4("10.250.3.4")), Some("wide"));
        // 10.1.0.0/24 is i = 256.
        assert_eq!(m.lookup(v4("10.1.0.9")), Some("c256"));
        assert_eq!(m.lookup(v4("11.0.0.1")), None);
        assert_eq!(m.lookup(v6("2001:db8:ffff::1")), None);
    }
}
