//! `status` on a terminal: a table that fits 100 columns, says whether each invoice's link
//! is live, cuts long names with an ellipsis by display width, and keeps everything for
//! `--wide` and `status INVOICE`.

use crate::common;

use common::TestEnv;
use unicode_width::UnicodeWidthStr;

const LONG_NAME: &str = "Stichting Vrienden van het Rijksmuseum Amsterdam";
const WIDE_NAME: &str = "株式会社東京商事アムステルダム支店";

fn installation() -> TestEnv {
    let env = TestEnv::new(
        "[cm]\nbase_url = \"sandbox\"\nclient_id = \"t\"\nclient_secret = \"t\"\nrequests_per_second = 1000\nburst = 1000\n",
    );
    let f = env.write_file(
        "a.csv",
        format!(
            "invoice_reference,customer_email,customer_name,amount,currency,due_date\n\
             INV-1,ann@example.com,Ann,10.00,EUR,2027-01-01\n\
             INV-2,bob@example.com,Bob,20.00,EUR,2027-01-01\n\
             INV-3,museum@example.com,{LONG_NAME},1234567.89,EUR,2027-01-01\n\
             INV-4,tokyo@example.com,{WIDE_NAME},30.00,EUR,2027-01-01\n"
        ),
    );
    let r = env.run(&["run", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The operator deactivates INV-1; the books settle INV-2 elsewhere.
    let r = env.run(&["deactivate", "INV-1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let f = env.write_file(
        "b.csv",
        "invoice_reference,customer_email,customer_name,amount,currency,due_date,status\n\
         INV-2,bob@example.com,Bob,20.00,EUR,2027-01-01,paid\n",
    );
    let r = env.run(&["run", f.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    env
}

fn row<'a>(out: &'a str, reference: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{reference} ")))
        .unwrap_or_else(|| panic!("no row for {reference} in\n{out}"))
}

#[test]
fn the_table_fits_100_columns_and_shows_whether_the_link_is_live() {
    let env = installation();
    let r = env.run(&["status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for line in r.stdout.lines() {
        assert!(line.width() <= 100, "{} columns: {line}", line.width());
    }
    let header = r.stdout.lines().next().unwrap();
    assert!(
        header.contains("LINK") && header.contains("MAIL"),
        "{header}"
    );
    // Deactivated by the operator: the invoice stays open, its link is dead.
    let inv1 = row(&r.stdout, "INV-1");
    assert!(
        inv1.contains(" open ") && inv1.contains(" inactive "),
        "{inv1}"
    );
    // Settled elsewhere: its link was deactivated by the cycle.
    let inv2 = row(&r.stdout, "INV-2");
    assert!(
        inv2.contains(" settled ") && inv2.contains(" inactive "),
        "{inv2}"
    );
    let inv3 = row(&r.stdout, "INV-3");
    assert!(
        inv3.contains(" active ") && inv3.contains("EUR 1234567.89"),
        "{inv3}"
    );
    assert!(inv3.contains("Stichting Vrienden v…"), "{inv3}");
    // Wide characters take two cells: the cut name and the columns after it still line up.
    let inv4 = row(&r.stdout, "INV-4");
    assert!(inv4.contains('…') && !inv4.contains(WIDE_NAME), "{inv4}");
    let amount_end = |l: &str| l[..l.find(" 2027-01-01").unwrap()].width();
    assert_eq!(amount_end(inv4), amount_end(inv3), "\n{inv3}\n{inv4}");
    // No payment address in the default table at all.
    assert!(!r.stdout.contains("http"), "{}", r.stdout);
}

#[test]
fn wide_and_single_invoice_views_cut_nothing_and_offer_no_dead_link() {
    let env = installation();
    let r = env.run(&["status", "--wide"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(LONG_NAME) && r.stdout.contains(WIDE_NAME));
    assert!(r.stdout.contains("settled_elsewhere"), "{}", r.stdout);
    let inv1 = row(&r.stdout, "INV-1");
    assert!(!inv1.contains("http"), "a dead link's address: {inv1}");
    assert!(row(&r.stdout, "INV-3").contains("http"), "{}", r.stdout);

    let r = env.run(&["status", "INV-1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let field = |name: &str| {
        r.stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{}", r.stdout))
            .to_string()
    };
    assert!(field("state").ends_with(" open"), "{}", r.stdout);
    assert!(field("link ").contains("inactive pml-"), "{}", r.stdout);
    assert!(
        field("link uri").contains("(no longer payable)"),
        "{}",
        r.stdout
    );
    assert!(
        field("customer").contains("Ann <ann@example.com>"),
        "{}",
        r.stdout
    );

    let json = env.invoice("INV-1");
    assert_eq!(json["link_state"], "inactive", "{json}");
    assert_eq!(json["link_active"], false, "{json}");
}
