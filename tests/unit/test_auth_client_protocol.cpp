// Dovecot auth-client protocol lines as authd parses them (the lines
// Postfix's xsasl_dovecot_server client sends).
#include "authd/auth_client_protocol.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace facteur::authd;

TEST_CASE("tab escaping follows Dovecot's str_tabescape") {
    auto [raw, escaped] = GENERATE(table<std::string, std::string>({
        {"alice@example.test", "alice@example.test"},
        {"a\tb", "a\001tb"},
        {"a\nb", "a\001nb"},
        {"a\rb", "a\001rb"},
        {"a\001b", "a\0011b"},
        {"\t\n\r\001", "\001t\001n\001r\0011"},
        {"back\\slash", "back\\slash"},
        {"", ""},
    }));
    CAPTURE(raw);
    CHECK(tab_escape(raw) == escaped);
    CHECK(tab_unescape(escaped) == raw);
    CHECK(tab_escape(raw).find_first_of("\t\n\r") == std::string::npos);
}

TEST_CASE("tab unescaping tolerates a dangling or unknown escape") {
    CHECK(tab_unescape("abc\001") == "abc\001");
    CHECK(tab_unescape("a\001xb") == "axb");
}

TEST_CASE("split_tabs keeps empty fields") {
    auto fields = split_tabs("A\t\tB\t");
    REQUIRE(fields.size() == 4);
    CHECK(fields[0] == "A");
    CHECK(fields[1].empty());
    CHECK(fields[2] == "B");
    CHECK(fields[3].empty());
}

TEST_CASE("request ids are decimal numbers") {
    auto [text, valid, value] = GENERATE(table<std::string, bool, unsigned long>({
        {"1", true, 1},
        {"4294967295", true, 4294967295UL},
        {"0", true, 0},
        {"", false, 0},
        {"-1", false, 0},
        {"+1", false, 0},
        {"1a", false, 0},
        {"0x10", false, 0},
        {" 1", false, 0},
        {"12345678901", false, 0},
    }));
    CAPTURE(text);
    unsigned long id = 0;
    CHECK(parse_id(text, id) == valid);
    if (valid) CHECK(id == value);
}

TEST_CASE("Postfix's AUTH line is parsed") {
    AuthCommand command;
    auto error = parse_auth("AUTH\t7\tPLAIN\tservice=smtp\tnologin\tlip=127.0.0.1\trip=192.0.2.7\tsecured\t"
                            "resp=AGFsaWNlAHNlY3JldA==",
                            command);
    REQUIRE_FALSE(error);
    CHECK(command.id == 7);
    CHECK(command.mechanism == "PLAIN");
    CHECK(command.service == "smtp");
    CHECK(command.local_ip == "127.0.0.1");
    CHECK(command.remote_ip == "192.0.2.7");
    CHECK(command.secured);
    REQUIRE(command.initial_response);
    CHECK(*command.initial_response == "AGFsaWNlAHNlY3JldA==");
}

TEST_CASE("AUTH without initial response, with Dovecot's other parameters ignored") {
    AuthCommand command;
    auto error = parse_auth("AUTH\t2\tLOGIN\tservice=imap\tlport=143\trport=50000\tvalid-client-cert\t"
                            "no-penalty\tsession=abc\tfuture-param=x",
                            command);
    REQUIRE_FALSE(error);
    CHECK(command.id == 2);
    CHECK(command.mechanism == "LOGIN");
    CHECK(command.service == "imap");
    CHECK_FALSE(command.secured);
    CHECK_FALSE(command.initial_response);
    CHECK(command.remote_ip.empty());
}

TEST_CASE("an empty resp= is an empty initial response, not none") {
    AuthCommand command;
    REQUIRE_FALSE(parse_auth("AUTH\t1\tPLAIN\tservice=smtp\tresp=", command));
    REQUIRE(command.initial_response);
    CHECK(command.initial_response->empty());
}

TEST_CASE("malformed AUTH lines are refused") {
    auto line = GENERATE(as<std::string>{},
                         "AUTH",                               // nothing
                         "AUTH\t1",                            // no mechanism
                         "AUTH\tx\tPLAIN\tservice=smtp",       // id not a number
                         "AUTH\t-1\tPLAIN\tservice=smtp",      // negative id
                         "AUTH\t1\t\tservice=smtp",            // empty mechanism
                         "AUTH\t1\tPLAIN",                     // no service
                         "AUTH\t1\tPLAIN\tservice=",           // empty service
                         "CONT\t1\tPLAIN\tservice=smtp");      // not AUTH
    CAPTURE(line);
    AuthCommand command;
    CHECK(parse_auth(line, command).has_value());
}

TEST_CASE("CONT lines") {
    unsigned long id = 0;
    std::string data;
    REQUIRE_FALSE(parse_cont("CONT\t3\tYWxpY2U=", id, data));
    CHECK(id == 3);
    CHECK(data == "YWxpY2U=");
    REQUIRE_FALSE(parse_cont("CONT\t4\t", id, data));
    CHECK(id == 4);
    CHECK(data.empty());
    REQUIRE_FALSE(parse_cont("CONT\t5\t*", id, data));
    CHECK(data == "*");

    auto bad = GENERATE(as<std::string>{}, "CONT", "CONT\t1", "CONT\tx\tAA==", "CONT\t1\tAA==\textra", "AUTH\t1\tAA==");
    CAPTURE(bad);
    CHECK(parse_cont(bad, id, data).has_value());
}
