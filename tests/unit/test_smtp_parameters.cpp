// Unit tests for smtpd/smtp_parameters: MAIL FROM and RCPT TO parameters
// (RFC 1870 SIZE, RFC 6152/3030 BODY, RFC 6531 SMTPUTF8, RFC 3461 DSN).
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "libmail/address.hpp"
#include "smtpd/smtp_parameters.hpp"

using namespace facteur;
using namespace facteur::smtpd;

namespace {

address::MailParameters params(std::string_view text) {
    auto parsed = address::parse_esmtp_parameters(text);
    REQUIRE(parsed.ok());
    return *parsed;
}

}  // namespace

TEST_CASE("MAIL parameters: accepted values") {
    MailOptions options;
    CHECK_FALSE(parse_mail_parameters(params(""), 1000, options).has_value());
    CHECK(options.body == queue::BodyType::seven_bit);

    REQUIRE_FALSE(parse_mail_parameters(
        params("SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159+2Bx AUTH=<>"), 1000, options));
    CHECK(options.declared_size == 1000);
    CHECK(options.body == queue::BodyType::eight_bit_mime);
    CHECK(options.smtputf8);
    CHECK(options.ret == queue::Ret::headers);
    CHECK(options.envid == "QQ314159+x");

    REQUIRE_FALSE(parse_mail_parameters(params("body=binarymime ret=full"), 1000, options));
    CHECK(options.body == queue::BodyType::binary_mime);
    CHECK(options.ret == queue::Ret::full);
    CHECK(options.envid.empty());
}

TEST_CASE("MAIL parameters: refusals with their codes") {
    auto [text, code, enhanced] = GENERATE(table<std::string, int, std::string>({
        {"SIZE=1001", 552, "5.3.4"},
        {"SIZE=99999999999999999999", 552, "5.3.4"},
        {"SIZE=123456789012345678901", 501, "5.5.4"},
        {"SIZE=12a", 501, "5.5.4"},
        {"SIZE", 501, "5.5.4"},
        {"BODY=9BIT", 501, "5.5.4"},
        {"BODY", 501, "5.5.4"},
        {"SMTPUTF8=yes", 501, "5.5.4"},
        {"RET=ALL", 501, "5.5.4"},
        {"ENVID=a+zz", 501, "5.5.4"},
        {"ENVID=a+2", 501, "5.5.4"},
        {"ENVID=+0D+0A", 501, "5.5.4"},
        {"ENVID=" + std::string(101, 'x'), 501, "5.5.4"},
        {"AUTH", 501, "5.5.4"},
        {"XFORWARD=1", 555, "5.5.4"},
        {"NOTIFY=NEVER", 555, "5.5.4"},
    }));
    INFO(text);
    MailOptions options;
    auto refusal = parse_mail_parameters(params(text), 1000, options);
    REQUIRE(refusal.has_value());
    CHECK(refusal->code == code);
    CHECK(refusal->enhanced == enhanced);
}

TEST_CASE("MAIL parameters: duplicates are refused by the parameter parser") {
    CHECK_FALSE(address::parse_esmtp_parameters("SIZE=1 SIZE=2").ok());
    CHECK_FALSE(address::parse_esmtp_parameters("BODY=7BIT body=8BITMIME").ok());
}

TEST_CASE("RCPT parameters: NOTIFY and ORCPT (RFC 3461 §4.1, §4.2)") {
    auto [text, notify, orcpt] = GENERATE(table<std::string, unsigned, std::string>({
        {"", queue::notify_default, ""},
        {"NOTIFY=NEVER", queue::notify_never, ""},
        {"NOTIFY=SUCCESS", queue::notify_success, ""},
        {"NOTIFY=success,failure,delay", queue::notify_success | queue::notify_failure | queue::notify_delay, ""},
        {"NOTIFY=FAILURE,DELAY ORCPT=rfc822;bob@example.test", queue::notify_failure | queue::notify_delay,
         "rfc822;bob@example.test"},
        {"ORCPT=rfc822;a+2Bb@example.test", queue::notify_default, "rfc822;a+b@example.test"},
        {"ORCPT=utf-8;bob@example.test", queue::notify_default, "utf-8;bob@example.test"},
    }));
    INFO(text);
    RcptOptions options;
    REQUIRE_FALSE(parse_rcpt_parameters(params(text), options).has_value());
    CHECK(options.notify == notify);
    CHECK(options.orcpt == orcpt);
}

TEST_CASE("RCPT parameters: invalid values") {
    auto [text, code] = GENERATE(table<std::string, int>({
        {"NOTIFY=NEVER,SUCCESS", 501},
        {"NOTIFY=FAILURE,NEVER", 501},
        {"NOTIFY=SOMETIMES", 501},
        {"NOTIFY=SUCCESS,,DELAY", 501},
        {"NOTIFY=SUCCESS,SUCCESS", 501},
        {"ORCPT=bob@example.test", 501},
        {"ORCPT=;bob@example.test", 501},
        {"ORCPT=rfc822;", 501},
        {"ORCPT=rfc822;bob+0D+0A@example.test", 501},
        {"ORCPT=rfc822;" + std::string(600, 'a'), 501},
        {"SIZE=10", 555},
    }));
    INFO(text);
    RcptOptions options;
    auto refusal = parse_rcpt_parameters(params(text), options);
    REQUIRE(refusal.has_value());
    CHECK(refusal->code == code);
    CHECK(refusal->enhanced == "5.5.4");
}

TEST_CASE("xtext decoding (RFC 3461 §4)") {
    CHECK(decode_xtext("plain").value() == "plain");
    CHECK(decode_xtext("a+2Bb+3Dc").value() == "a+b=c");
    CHECK(decode_xtext("").value().empty());
    for (const std::string& bad : std::vector<std::string>{"a+", "a+2", "a+2b", "a=b", "a b", "+G0", std::string("a\0b", 3)}) {
        INFO(bad);
        CHECK_FALSE(decode_xtext(bad).ok());
    }
}
