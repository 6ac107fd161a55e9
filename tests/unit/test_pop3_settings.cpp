// Unit tests for pop3d/settings: the [pop3d] keys as pop3d reads them,
// the plaintext policy values and the inherited socket names.
#include <catch2/catch.hpp>

#include "libmail/config.hpp"
#include "pop3d/settings.hpp"

using namespace facteur;
using namespace facteur::pop3d;

TEST_CASE("pop3 settings: defaults and the [pop3d] section") {
    auto config = config::Config::parse(
        "myhostname = mail.example.test\n"
        "auth_lookup_socket = /run/t/auth-lookup\n"
        "[pop3d]\n"
        "banner = hello there\n"
        "plaintext_auth = no\n"
        "apop = no\n"
        "command_line_limit = 1024\n"
        "login_failure_limit = 5\n"
        "auth_failure_delay = 2s\n"
        "error_limit = 7\n"
        "login_idle_timeout = 30s\n"
        "idle_timeout = 20m\n"
        "client_connection_limit = 4\n"
        "session_limit = 9\n",
        "t.conf");
    REQUIRE(config.ok());
    auto settings = load_settings(*config);
    REQUIRE(settings.ok());
    CHECK(settings->myhostname == "mail.example.test");
    CHECK(settings->banner == "hello there");
    CHECK(settings->plaintext_auth == PlaintextAuth::no);
    CHECK_FALSE(settings->apop);
    CHECK(settings->command_line_limit == 1024);
    CHECK(settings->login_failure_limit == 5);
    CHECK(settings->auth_failure_delay == std::chrono::seconds(2));
    CHECK(settings->error_limit == 7);
    CHECK(settings->login_idle_timeout == std::chrono::seconds(30));
    CHECK(settings->idle_timeout == std::chrono::minutes(20));
    CHECK(settings->client_connection_limit == 4);
    CHECK(settings->session_limit == 9);
    CHECK(settings->auth_lookup_socket == "/run/t/auth-lookup");
    CHECK_FALSE(settings->tls_configured());

    auto defaults = config::Config::parse("myhostname = mail.example.test\n", "t.conf");
    REQUIRE(defaults.ok());
    auto standard = load_settings(*defaults);
    REQUIRE(standard.ok());
    CHECK(standard->banner == "facteur POP3 ready");
    CHECK(standard->plaintext_auth == PlaintextAuth::loopback);
    CHECK(standard->apop);
    CHECK(standard->idle_timeout >= std::chrono::minutes(10));  // RFC 1939 §3
}

TEST_CASE("pop3 settings: a bad plaintext_auth stops the daemon") {
    auto config = config::Config::parse("myhostname = mail.example.test\n[pop3d]\nplaintext_auth = maybe\n", "t.conf");
    REQUIRE(config.ok());
    auto settings = load_settings(*config);
    REQUIRE_FALSE(settings.ok());
    CHECK(settings.error().find("plaintext_auth") != std::string::npos);
}

TEST_CASE("pop3 settings: plaintext policy names") {
    for (PlaintextAuth policy : {PlaintextAuth::no, PlaintextAuth::loopback, PlaintextAuth::yes}) {
        auto parsed = parse_plaintext_auth(plaintext_auth_name(policy));
        REQUIRE(parsed.ok());
        CHECK(*parsed == policy);
    }
    CHECK_FALSE(parse_plaintext_auth("YES").ok());
    CHECK_FALSE(parse_plaintext_auth("").ok());
}

TEST_CASE("pop3 settings: inherited socket names") {
    CHECK(*port_kind_from_socket_name("pop3.0") == PortKind::pop3);
    CHECK(*port_kind_from_socket_name("pop3.12") == PortKind::pop3);
    CHECK(*port_kind_from_socket_name("pop3s.0") == PortKind::pop3s);
    CHECK_FALSE(port_kind_from_socket_name("imap.0").ok());
    CHECK_FALSE(port_kind_from_socket_name("smtp.0").ok());
    CHECK(port_kind_name(PortKind::pop3) == "pop3");
    CHECK(port_kind_name(PortKind::pop3s) == "pop3s");
}
