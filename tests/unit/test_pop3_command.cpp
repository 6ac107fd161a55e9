// Unit tests for pop3d/pop3_command: RFC 1939 §3 command lines (keywords,
// single-space arguments, line endings), message numbers and TOP counts.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "pop3d/pop3_command.hpp"

using namespace facteur::pop3d;

namespace {

std::vector<std::string> strings(const std::vector<std::string_view>& views) {
    return std::vector<std::string>(views.begin(), views.end());
}

}  // namespace

TEST_CASE("pop3 commands: keywords are case-insensitive, arguments split on single spaces") {
    auto [line, keyword, arguments] = GENERATE(table<std::string, Keyword, std::vector<std::string>>({
        {"CAPA\r\n", Keyword::capa, {}},
        {"capa\r\n", Keyword::capa, {}},
        {"USER alice@example.test\r\n", Keyword::user, {"alice@example.test"}},
        {"uSeR bob\r\n", Keyword::user, {"bob"}},
        {"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n", Keyword::apop,
         {"mrose", "c4c9334bac560ecc979e58001b3e22fb"}},
        {"AUTH\r\n", Keyword::auth, {}},
        {"AUTH PLAIN\r\n", Keyword::auth, {"PLAIN"}},
        {"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", Keyword::auth, {"PLAIN", "AGFsaWNlAHNlY3JldA=="}},
        {"STLS\r\n", Keyword::stls, {}},
        {"QUIT\r\n", Keyword::quit, {}},
        {"NOOP\r\n", Keyword::noop, {}},
        {"STAT\r\n", Keyword::stat, {}},
        {"STAT \r\n", Keyword::stat, {}},  // trailing space: no argument
        {"LIST\r\n", Keyword::list, {}},
        {"LIST 1\r\n", Keyword::list, {"1"}},
        {"RETR 12\r\n", Keyword::retr, {"12"}},
        {"DELE 3\r\n", Keyword::dele, {"3"}},
        {"RSET\r\n", Keyword::rset, {}},
        {"TOP 1 10\r\n", Keyword::top, {"1", "10"}},
        {"top 1 0\r\n", Keyword::top, {"1", "0"}},
        {"UIDL\r\n", Keyword::uidl, {}},
        {"UIDL 2\r\n", Keyword::uidl, {"2"}},
        {"LAST\r\n", Keyword::last, {}},
        {"LIST  1\r\n", Keyword::list, {"", "1"}},  // two spaces: an empty argument
        {"TOP 1 2 \t\r\n", Keyword::top, {"1", "2"}},
        {"RETR 1\n", Keyword::retr, {"1"}},  // a bare LF ends a line too
        {"NOOP", Keyword::noop, {}},         // no line ending: parsed as one line
    }));
    INFO(line);
    Command command = parse_command(line);
    CHECK(command.error == CommandError::none);
    CHECK(command.keyword == keyword);
    CHECK(strings(command.arguments) == arguments);
}

TEST_CASE("pop3 commands: PASS keeps its whole argument, spaces included (RFC 1939 §7)") {
    Command command = parse_command("PASS  my secret pass \r\n");
    REQUIRE(command.error == CommandError::none);
    CHECK(command.keyword == Keyword::pass);
    CHECK(command.rest == " my secret pass ");
    CHECK(parse_command("PASS\r\n").rest.empty());
    CHECK(parse_command("pass x\n").rest == "x");
}

TEST_CASE("pop3 commands: errors") {
    auto [line, error, name] = GENERATE(table<std::string, CommandError, std::string>({
        {"\r\n", CommandError::empty, ""},
        {"\n", CommandError::empty, ""},
        {"FOO\r\n", CommandError::unknown_command, "FOO"},
        {"XTND XMIT\r\n", CommandError::unknown_command, "XTND"},
        {"STATS\r\n", CommandError::unknown_command, ""},  // longer than 4: not a keyword
        {"RET\r\n", CommandError::unknown_command, "RET"},
        {"ST4T\r\n", CommandError::unknown_command, ""},
        {" STAT\r\n", CommandError::unknown_command, ""},  // leading space
        {"STAT\r\r\n", CommandError::bad_character, ""},   // a CR inside the line
        {"STAT\rLIST\r\n", CommandError::bad_character, ""},
        {std::string("USER a\0b\r\n", 10), CommandError::bad_character, ""},
    }));
    INFO(line);
    Command command = parse_command(line);
    CHECK(command.error == error);
    CHECK(command.keyword == Keyword::unknown);
    CHECK(std::string(command.name) == name);
}

TEST_CASE("pop3 commands: a bare CR never ends a line") {
    // "NOOP\rQUIT\r\n" is one (bad) line, not two commands.
    Command command = parse_command("NOOP\rQUIT\r\n");
    CHECK(command.error == CommandError::bad_character);
    CHECK(strip_line_ending("abc\r") == "abc\r");
    CHECK(strip_line_ending("abc\r\n") == "abc");
    CHECK(strip_line_ending("abc\n") == "abc");
    CHECK(strip_line_ending("abc") == "abc");
    CHECK(strip_line_ending("\r\n") == "");
}

TEST_CASE("pop3 commands: keyword names") {
    CHECK(keyword_name(Keyword::retr) == "RETR");
    CHECK(keyword_name(Keyword::top) == "TOP");
    CHECK(keyword_name(Keyword::unknown) == "UNKNOWN");
}

TEST_CASE("pop3 commands: decimal numbers") {
    CHECK(parse_decimal("0") == 0u);
    CHECK(parse_decimal("007") == 7u);
    CHECK(parse_decimal("18446744073709551615") == 18446744073709551615ull);
    CHECK_FALSE(parse_decimal("18446744073709551616").has_value());
    CHECK_FALSE(parse_decimal("99999999999999999999999").has_value());
    CHECK_FALSE(parse_decimal("").has_value());
    CHECK_FALSE(parse_decimal("+1").has_value());
    CHECK_FALSE(parse_decimal("-1").has_value());
    CHECK_FALSE(parse_decimal(" 1").has_value());
    CHECK_FALSE(parse_decimal("1 ").has_value());
    CHECK_FALSE(parse_decimal("0x10").has_value());
    CHECK_FALSE(parse_decimal("1e3").has_value());
}

TEST_CASE("pop3 commands: message numbers are 1..count") {
    auto [text, count, expected] = GENERATE(table<std::string, size_t, std::optional<size_t>>({
        {"1", 1, 1},
        {"3", 3, 3},
        {"03", 3, 3},
        {"4", 3, std::nullopt},
        {"0", 3, std::nullopt},
        {"1", 0, std::nullopt},  // empty mailbox
        {"-1", 3, std::nullopt},
        {"+1", 3, std::nullopt},
        {"", 3, std::nullopt},
        {"1.0", 3, std::nullopt},
        {"18446744073709551616", 3, std::nullopt},
    }));
    INFO(text << " of " << count);
    CHECK(parse_message_number(text, count) == expected);
}
