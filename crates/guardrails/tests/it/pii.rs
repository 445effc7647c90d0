//! Personal data detectors: validated positives in Chinese and English text, look-alikes that
//! fail validation, and numbers that only resemble personal data.

use crate::{check, rules};

const RULES: &str = r#"
[[rules]]
id = "cn_resident_id"
action = "mask"
mask_with = "<id>"
match = { pii = ["cn_resident_id"] }
[[rules]]
id = "cn_mobile"
action = "mask"
mask_with = "<mobile>"
match = { pii = ["cn_mobile"] }
[[rules]]
id = "bank_card"
action = "mask"
mask_with = "<card>"
match = { pii = ["bank_card"] }
[[rules]]
id = "email"
action = "mask"
mask_with = "<email>"
match = { pii = ["email"] }
[[rules]]
id = "ip_address"
action = "mask"
mask_with = "<ip>"
match = { pii = ["ip_address"] }
[[rules]]
id = "passport"
action = "mask"
mask_with = "<passport>"
match = { pii = ["passport"] }
[[rules]]
id = "phone"
action = "mask"
mask_with = "<phone>"
match = { pii = ["phone"] }
"#;

#[test]
fn detectors_find_validated_personal_data() {
    let engine = rules(RULES);
    let cases = [
        // Resident ID numbers: checksum, lower-case x, inside Chinese text.
        ("身份证号11010519491231002X已登记", "身份证号<id>已登记"),
        ("ID: 11010519491231002x.", "ID: <id>."),
        ("证件 310115200002294567 (leap day)", "证件 <id> (leap day)"),
        // Mobile numbers, bare, grouped, with the country code.
        ("电话13812345678，请回电", "电话<mobile>，请回电"),
        ("call 138-1234-5678 now", "call <mobile> now"),
        ("call +86 138 1234 5678 now", "call <mobile> now"),
        // Card numbers pass Luhn, grouped or not.
        ("卡号 6222 0212 3456 7890 128 到账", "卡号 <card> 到账"),
        ("card 4111111111111111 expires", "card <card> expires"),
        // E-mail addresses, next to Chinese text, before a full stop.
        ("联系zhang.san@example.com.cn谢谢", "联系<email>谢谢"),
        ("write to ops+alerts@corp.example.io.", "write to <email>."),
        // IP addresses, v4 and v6.
        ("server 192.168.1.10 is down", "server <ip> is down"),
        ("addr 2001:db8::8a2e:370:7334 up", "addr <ip> up"),
        // Passports of the PRC.
        ("护照号E12345678，有效期", "护照号<passport>，有效期"),
        ("passport EA1234567 issued", "passport <passport> issued"),
        // International numbers.
        ("office +1 415-555-0132 ext", "office <phone> ext"),
        ("London +44 20 7946 0958.", "London <phone>."),
    ];
    for (text, expected) in cases {
        let verdict = check(&engine, text);
        assert_eq!(
            verdict.masked.as_deref(),
            Some(expected),
            "{text}: {:?}",
            verdict.hits
        );
    }
}

#[test]
fn look_alikes_that_fail_validation_are_not_reported() {
    let engine = rules(RULES);
    let cases = [
        // Wrong checksum, impossible date, unknown province.
        "身份证号110105194912310021",
        "身份证号11010519491331002X",
        "ID 99010519491231002X",
        // Not a mobile prefix, one digit too many.
        "号码12812345678",
        "号码138123456789",
        // Luhn fails.
        "card 4111111111111112",
        // Not addresses.
        "a@b",
        "user@localhost",
        "@mention in chat",
        "256.1.1.1 is no address",
        "version 1.2.3",
        "v1.2.3.4",
        "meet at 10:30 or 12:00:00",
        "MAC 00:1a:2b:3c:4d:5e",
        // Passport shapes that are wrong.
        "G1234567",
        "XE12345678",
        "CODE12345678",
        // A leading zero is no country code.
        "+0 123 456 789",
        // Numbers in prose: a date, a decimal, a long id that continues into letters.
        "on 2024-01-15 we paid 3.1415926535897932",
        "order 13812345678abc",
    ];
    for text in cases {
        let verdict = check(&engine, text);
        assert!(verdict.hits.is_empty(), "{text}: {:?}", verdict.hits);
    }
}

#[test]
fn every_detector_reports_its_kind_and_never_the_value() {
    let engine = rules(
        r#"
[[rules]]
id = "pii"
action = "warn"
match = { pii = ["cn_resident_id", "cn_mobile", "bank_card", "email", "ip_address", "passport", "phone"] }
"#,
    );
    let verdict = check(
        &engine,
        "张三 11010519491231002X 13812345678 4111111111111111 a.b@example.com 10.0.0.1 E12345678 +1 415-555-0132",
    );
    let [hit] = verdict.hits.as_slice() else {
        panic!("expected one hit: {:?}", verdict.hits);
    };
    assert_eq!(hit.matches, 7);
    assert_eq!(
        hit.details,
        [
            "cn_resident_id",
            "cn_mobile",
            "bank_card",
            "email",
            "ip_address",
            "passport",
            "phone"
        ]
    );
    assert!(verdict.masked.is_none(), "warn does not mask");
}
