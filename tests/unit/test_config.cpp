// Unit tests for libmail/config: parsing, expansion, units, errors, and the
// rule that facteur.conf(5) documents every parameter with its default.
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <sstream>

#include "libmail/config.hpp"

using namespace facteur;
using namespace std::chrono_literals;

TEST_CASE("defaults expand $name references") {
    config::Config config;
    CHECK(config.path("data_dir") == "/var/lib/facteur");
    CHECK(config.path("auth_db") == "/var/lib/facteur/auth/users.sqlite");
    CHECK(config.path("mail_dir") == "/var/lib/facteur/mail");
    CHECK(config.integer("authd", "processes") == 1);
    CHECK(config.boolean("authd", "enabled"));
    CHECK(config.duration("", "service_throttle_time") == 60s);
    CHECK(config.mode("", "auth_sasl_socket_mode") == 0666);
}

TEST_CASE("a file overrides, sections, comments, continuation lines") {
    auto config = config::Config::parse(
        "# a comment\n"
        "data_dir = /srv/facteur\n"
        "\n"
        "log_level =\n"
        "   debug\n"
        "[authd]\n"
        "processes = 2\r\n"
        "failure_delay = 250ms\n"
        "failure_window = 2h\n",
        "test.conf");
    REQUIRE(config.ok());
    CHECK(config->path("auth_db") == "/srv/facteur/auth/users.sqlite");
    CHECK(config->string("log_level") == "debug");
    CHECK(config->integer("authd", "processes") == 2);
    CHECK(config->duration("authd", "failure_delay") == 250ms);
    CHECK(config->duration("authd", "failure_window") == 2h);
    CHECK(config->is_set("", "data_dir"));
    CHECK_FALSE(config->is_set("", "spool_dir"));
    std::string shown = config->show(true);
    CHECK(shown.find("data_dir = /srv/facteur") != std::string::npos);
    CHECK(shown.find("[authd]\nprocesses = 2") != std::string::npos);
    CHECK(shown.find("spool_dir") == std::string::npos);
    CHECK(config->show(false).find("spool_dir = /var/spool/facteur") != std::string::npos);
}

TEST_CASE("${name} and $$ forms") {
    auto config = config::Config::parse("data_dir = /a/${config_directory}x\nmail_owner = cost$$5\n", "t.conf");
    REQUIRE(config.ok());
    CHECK(config->path("data_dir") == "/a//etc/facteurx");
    CHECK(config->string("mail_owner") == "cost$5");
}

TEST_CASE("errors name the file and line") {
    struct Case {
        const char* text;
        const char* expected;
    };
    auto [text, expected] = GENERATE(values<Case>({
        {"\n\nno_such_key = 1\n", "t.conf:3: unknown parameter 'no_such_key'"},
        {"[authd]\nspool_dir = /x\n", "t.conf:2: unknown parameter 'spool_dir' in section [authd]"},
        {"[nowhere]\n", "t.conf:1: unknown section [nowhere]"},
        {"[authd]\nprocesses = 0\n", "t.conf:2: processes: 0 is out of range (1 to 16)"},
        {"[authd]\nprocesses = two\n", "t.conf:2: processes: 'two' is not an integer"},
        {"[authd]\nenabled = maybe\n", "t.conf:2: enabled: 'maybe' is not a boolean"},
        {"[authd]\nfailure_delay = 5 fortnights\n", "t.conf:2: failure_delay: '5 fortnights' has an unknown time unit"},
        {"data_dir = relative/path\n", "t.conf:1: data_dir: 'relative/path' is not an absolute path"},
        {"data_dir = $nothing\n", "t.conf:1: data_dir: unknown parameter $nothing"},
        {"data_dir = $data_dir\n", "t.conf:1: data_dir: $name references nest too deeply"},
        {"just words\n", "t.conf:1: expected 'name = value'"},
        {"  indented = 1\n", "t.conf:1: continuation line without a parameter"},
        {"auth_sasl_socket_mode = 0999\n", "t.conf:1: auth_sasl_socket_mode: '0999' is not an octal file mode"},
    }));
    auto config = config::Config::parse(text, "t.conf");
    REQUIRE_FALSE(config.ok());
    CHECK_THAT(config.error(), Catch::StartsWith(expected));
}

TEST_CASE("size and duration units") {
    CHECK(config::parse_size("50M").value() == 50ull << 20);
    CHECK(config::parse_size("4k").value() == 4096);
    CHECK(config::parse_size("1G").value() == 1ull << 30);
    CHECK(config::parse_size("123").value() == 123);
    CHECK_FALSE(config::parse_size("12T").ok());
    CHECK_FALSE(config::parse_size("99999999999999999999").ok());
    CHECK_FALSE(config::parse_size("18446744073709551615G").ok());
    CHECK(config::parse_duration("30s").value() == 30s);
    CHECK(config::parse_duration("30").value() == 30s);
    CHECK(config::parse_duration("5m").value() == 5min);
    CHECK(config::parse_duration("5d").value() == 120h);
    CHECK(config::parse_duration("1w").value() == 168h);
    CHECK(config::parse_duration("10ms").value() == 10ms);
    CHECK_FALSE(config::parse_duration("-1s").ok());
    CHECK_FALSE(config::parse_duration("").ok());
    CHECK(config::split_list("a, b  c,,d") == std::vector<std::string>{"a", "b", "c", "d"});
}

TEST_CASE("set() validates like the parser") {
    config::Config config;
    CHECK(config.set("authd", "processes", "3").ok());
    CHECK(config.integer("authd", "processes") == 3);
    CHECK_FALSE(config.set("authd", "processes", "300").ok());
    CHECK(config.integer("authd", "processes") == 3);
    CHECK_FALSE(config.set("", "nope", "1").ok());
}

TEST_CASE("hostile input does not crash") {
    std::string big(200000, 'x');
    CHECK_FALSE(config::Config::parse(big, "t").ok());
    CHECK_FALSE(config::Config::parse(std::string("a\0b = 1\n", 8), "t").ok());
    CHECK_FALSE(config::Config::parse("data_dir = ${unterminated\n", "t").ok());
    CHECK_FALSE(config::Config::parse("data_dir = /x$\n", "t").ok());
}

// DESIGN §7: facteur.conf(5) documents every key, with its default.
TEST_CASE("facteur.conf(5) documents every parameter and its default") {
    std::ifstream in(std::string(FACTEUR_SOURCE_DIR) + "/man/facteur.conf.5");
    REQUIRE(in);
    std::stringstream text;
    text << in.rdbuf();
    std::string page = text.str();
    for (const auto& parameter : config::parameters()) {
        std::string section = parameter.section.empty() ? "" : "[" + std::string(parameter.section) + "] ";
        INFO("parameter " << section << parameter.name);
        // Each parameter has an entry ".B name" (global) or ".B [section] name".
        std::string heading = ".TP\n.B " + section + std::string(parameter.name) + "\n";
        auto at = page.find(heading);
        REQUIRE(at != std::string::npos);
        // ...whose text states the default as written in the table.
        std::string wanted = "Default: " + std::string(parameter.default_value.empty() ? "(empty)" : parameter.default_value);
        // The daemon directory's default depends on the install prefix.
        if (parameter.name == "daemon_directory") wanted = "Default: \\fIprefix\\fP/lib/facteur";
        auto next = page.find(".TP", at + heading.size());
        std::string entry = page.substr(at, next == std::string::npos ? std::string::npos : next - at);
        // groff escapes: a backslash-free default must appear verbatim, with \- for -
        std::string escaped;
        for (char c : wanted) {
            if (c == '-') escaped += "\\-";
            else escaped += c;
        }
        CHECK((entry.find(wanted) != std::string::npos || entry.find(escaped) != std::string::npos));
    }
}
