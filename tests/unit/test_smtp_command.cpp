// Unit tests for smtpd/smtp_command: RFC 5321 §4.1 command lines, BDAT
// (RFC 3030) and AUTH (RFC 4954) arguments, hostile bytes.
#include <catch2/catch.hpp>

#include <string>

#include "smtpd/smtp_command.hpp"

using namespace facteur::smtpd;

TEST_CASE("smtp commands: verbs are case-insensitive and arguments trimmed") {
    auto [line, verb, argument] = GENERATE(table<std::string, Verb, std::string>({
        {"EHLO client.example\r\n", Verb::ehlo, "client.example"},
        {"ehlo client.example\r\n", Verb::ehlo, "client.example"},
        {"HeLo x\r\n", Verb::helo, "x"},
        {"MAIL FROM:<a@b.test>\r\n", Verb::mail, "<a@b.test>"},
        {"mail from:<a@b.test> SIZE=10\r\n", Verb::mail, "<a@b.test> SIZE=10"},
        {"MAIL FROM: <a@b.test>\r\n", Verb::mail, " <a@b.test>"},
        {"RCPT TO:<b@c.test>\r\n", Verb::rcpt, "<b@c.test>"},
        {"rcpt to:<Postmaster>\r\n", Verb::rcpt, "<Postmaster>"},
        {"DATA\r\n", Verb::data, ""},
        {"data  \r\n", Verb::data, ""},
        {"BDAT 100 LAST\r\n", Verb::bdat, "100 LAST"},
        {"RSET\r\n", Verb::rset, ""},
        {"NOOP\r\n", Verb::noop, ""},
        {"NOOP anything goes\r\n", Verb::noop, "anything goes"},
        {"QUIT\r\n", Verb::quit, ""},
        {"HELP\r\n", Verb::help, ""},
        {"HELP MAIL\r\n", Verb::help, "MAIL"},
        {"VRFY bob\r\n", Verb::vrfy, "bob"},
        {"EXPN list\r\n", Verb::expn, "list"},
        {"TURN\r\n", Verb::turn, ""},
        {"ETRN example.test\r\n", Verb::etrn, "example.test"},
        {"STARTTLS\r\n", Verb::starttls, ""},
        {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", Verb::auth, "PLAIN AGFsaWNlAHNlY3JldA=="},
        {"NOOP", Verb::noop, ""},  // no line ending at all: parsed as one line
    }));
    INFO(line);
    Command command = parse_command(line);
    CHECK(command.error == CommandError::none);
    CHECK(command.verb == verb);
    CHECK(std::string(command.argument) == argument);
}

TEST_CASE("smtp commands: errors are classified for the right reply") {
    auto [line, error] = GENERATE(table<std::string, CommandError>({
        {"FOO bar\r\n", CommandError::unknown_command},
        {"\r\n", CommandError::unknown_command},
        {"MAILFROM:<a@b>\r\n", CommandError::unknown_command},
        {"MAIL <a@b>\r\n", CommandError::syntax},
        {"MAIL TO:<a@b>\r\n", CommandError::syntax},
        {"RCPT FROM:<a@b>\r\n", CommandError::syntax},
        {"HELO\r\n", CommandError::syntax},
        {"EHLO   \r\n", CommandError::syntax},
        {"DATA now\r\n", CommandError::syntax},
        {"QUIT please\r\n", CommandError::syntax},
        {"STARTTLS x\r\n", CommandError::syntax},
        {"RSET x\r\n", CommandError::syntax},
        {"BDAT\r\n", CommandError::syntax},
        {"AUTH\r\n", CommandError::syntax},
        {"VRFY\r\n", CommandError::syntax},
        {"NOOP\n", CommandError::bad_line_ending},
        {"\n", CommandError::bad_line_ending},
        {"MAIL FROM:<a@b>\rRCPT TO:<c@d>\r\n", CommandError::bad_character},
        {std::string("NOOP\0x\r\n", 8), CommandError::bad_character},
        {"NOOP \x1b[31m\r\n", CommandError::bad_character},
        {"NOOP \x7f\r\n", CommandError::bad_character},
    }));
    INFO(line);
    Command command = parse_command(line);
    CHECK(command.error == error);
    CHECK_FALSE(command.error_text.empty());
}

TEST_CASE("smtp commands: 8-bit bytes are allowed (SMTPUTF8 addresses)") {
    Command command = parse_command("RCPT TO:<j\xc3\xb6rg@example.test>\r\n");
    CHECK(command.error == CommandError::none);
    CHECK(command.verb == Verb::rcpt);
}

TEST_CASE("smtp commands: verb names") {
    CHECK(verb_name(Verb::starttls) == "STARTTLS");
    CHECK(verb_name(Verb::unknown) == "UNKNOWN");
}

TEST_CASE("BDAT arguments (RFC 3030 §2)") {
    auto [text, size, last] = GENERATE(table<std::string, uint64_t, bool>({
        {"0", 0, false},
        {"0 LAST", 0, true},
        {"100", 100, false},
        {"100 last", 100, true},
        {"  42   LAST  ", 42, true},
        {"9999999999999999999", 9999999999999999999ull, false},
    }));
    INFO(text);
    auto parsed = parse_bdat_argument(text);
    REQUIRE(parsed.ok());
    CHECK(parsed->size == size);
    CHECK(parsed->last == last);
}

TEST_CASE("BDAT arguments: malformed") {
    auto text = GENERATE(as<std::string>{}, "", "LAST", "-1", "1e3", "12 FIRST", "12 LAST x", "0x10",
                         "99999999999999999999", "18446744073709551616");
    INFO(text);
    CHECK_FALSE(parse_bdat_argument(text).ok());
}

TEST_CASE("AUTH arguments (RFC 4954 §4)") {
    auto parsed = parse_auth_argument("PLAIN AGFsaWNlAHNlY3JldA==");
    REQUIRE(parsed.ok());
    CHECK(parsed->mechanism == "PLAIN");
    REQUIRE(parsed->initial_response.has_value());
    CHECK(*parsed->initial_response == "AGFsaWNlAHNlY3JldA==");

    auto login = parse_auth_argument("login");
    REQUIRE(login.ok());
    CHECK(login->mechanism == "login");
    CHECK_FALSE(login->initial_response.has_value());

    auto empty = parse_auth_argument("PLAIN =");
    REQUIRE(empty.ok());
    CHECK(*empty->initial_response == "=");

    for (std::string bad : {"", "PL/AIN", "PLAIN a b", "THIS-MECHANISM-NAME-IS-TOO-LONG"}) {
        INFO(bad);
        CHECK_FALSE(parse_auth_argument(bad).ok());
    }
}

TEST_CASE("MAIL/RCPT arguments: path and parameters split apart") {
    auto [text, path, parameters] = GENERATE(table<std::string, std::string, std::string>({
        {"<a@b.test>", "<a@b.test>", ""},
        {" <a@b.test>", "<a@b.test>", ""},
        {"<> SIZE=10", "<>", " SIZE=10"},
        {"<\"a> b\"@c.test> BODY=8BITMIME", "<\"a> b\"@c.test>", " BODY=8BITMIME"},
        {"<\"a\\\"> b\"@c.test>", "<\"a\\\"> b\"@c.test>", ""},
        {"<@hop:a@b.test> NOTIFY=NEVER", "<@hop:a@b.test>", " NOTIFY=NEVER"},
    }));
    INFO(text);
    auto split = split_mail_argument(text);
    REQUIRE(split.ok());
    CHECK(std::string(split->path) == path);
    CHECK(std::string(split->parameters) == parameters);
}

TEST_CASE("MAIL/RCPT arguments: malformed") {
    auto text = GENERATE(as<std::string>{}, "", "a@b.test", "<a@b.test", "<a@b.test>SIZE=1", "<\"a@b.test>", "  <a@b>");
    INFO(text);
    CHECK_FALSE(split_mail_argument(text).ok());
}

TEST_CASE("ETRN arguments (RFC 1985 section 5)") {
    auto plain = parse_etrn_argument("remote.test");
    REQUIRE(plain.ok());
    CHECK(plain->kind == EtrnArgument::Kind::domain);
    CHECK(plain->name == "remote.test");
    auto below = parse_etrn_argument(" @Remote.test ");
    REQUIRE(below.ok());
    CHECK(below->kind == EtrnArgument::Kind::subdomains);
    CHECK(below->name == "Remote.test");
    auto queue = parse_etrn_argument("#outbound");
    REQUIRE(queue.ok());
    CHECK(queue->kind == EtrnArgument::Kind::queue);
    auto bad = GENERATE(as<std::string>{}, "", "@", "#", "a..b", ".a", "a.", "a b", "[192.0.2.1]", "a@b", "@@a",
                        std::string(256, 'a'));
    CAPTURE(bad);
    CHECK_FALSE(parse_etrn_argument(bad).ok());
    CHECK(parse_command("ETRN\r\n").error == CommandError::syntax);
    CHECK(parse_command("etrn remote.test\r\n").verb == Verb::etrn);
}
