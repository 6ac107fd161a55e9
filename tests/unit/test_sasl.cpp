// Unit tests for libmail/sasl: PLAIN messages (RFC 4616 §2), LOGIN flows,
// mechanism lookup.
#include <catch2/catch.hpp>

#include <string>

#include "libmail/sasl.hpp"

using namespace facteur;
using namespace std::string_literals;

TEST_CASE("SASL PLAIN messages (RFC 4616 §2)") {
    struct Case {
        std::string message;
        bool ok;
        std::string authzid, authcid, password;
    };
    const std::string n255(255, 'n'), n256(256, 'n');
    auto c = GENERATE_REF(values<Case>({
        {"\0alice\0secret"s, true, "", "alice", "secret"},
        {"alice\0alice\0secret"s, true, "alice", "alice", "secret"},
        // Extracted as sent: whether bob may act as alice is authd's policy.
        {"bob\0alice\0secret"s, true, "bob", "alice", "secret"},
        // RFC 4616 §4 example.
        {"\0tim\0tanstaaftanstaaf"s, true, "", "tim", "tanstaaftanstaaf"},
        {"Ursel\0Kurt\0xipj3plmq"s, true, "Ursel", "Kurt", "xipj3plmq"},
        {"\0al ice@example.test\0pass word \xc3\xa9"s, true, "", "al ice@example.test", "pass word \xc3\xa9"},
        {"\0"s + n255 + "\0"s + n255, true, "", n255, n255},
        {n255 + "\0u\0p"s, true, n255, "u", "p"},
        {"\0\0secret"s, false, "", "", ""},
        {"\0alice\0"s, false, "", "", ""},
        {"\0\0"s, false, "", "", ""},
        {"alice secret"s, false, "", "", ""},
        {"\0alice"s, false, "", "", ""},
        {"\0alice\0sec\0ret"s, false, "", "", ""},
        {"\0"s + n256 + "\0x"s, false, "", "", ""},
        {"\0u\0"s + n256, false, "", "", ""},
        {n256 + "\0u\0p"s, false, "", "", ""},
    }));
    INFO("message size " << c.message.size());
    auto mechanism = sasl::make_server_mechanism("PLAIN");
    REQUIRE(mechanism);
    sasl::Step step = mechanism->start(std::string_view(c.message));
    if (c.ok) {
        REQUIRE(step.kind == sasl::Step::Kind::done);
        CHECK(step.error.empty());
        CHECK(mechanism->credentials().authzid == c.authzid);
        CHECK(mechanism->credentials().authcid == c.authcid);
        CHECK(mechanism->credentials().password == c.password);
    } else {
        CHECK(step.kind == sasl::Step::Kind::failed);
        CHECK_FALSE(step.error.empty());
        CHECK(mechanism->credentials().password.empty());
    }
    // Finished either way: nothing more is accepted.
    CHECK(mechanism->step("\0x\0y"s).kind == sasl::Step::Kind::failed);
}

TEST_CASE("SASL PLAIN without or with an empty initial response asks for the message") {
    auto initial = GENERATE(std::optional<std::string_view>{}, std::optional<std::string_view>{std::string_view{}});
    auto mechanism = sasl::make_server_mechanism("plain");
    REQUIRE(mechanism);
    sasl::Step step = mechanism->start(initial);
    REQUIRE(step.kind == sasl::Step::Kind::challenge);
    CHECK(step.challenge.empty());
    step = mechanism->step("\0bob\0pw"s);
    REQUIRE(step.kind == sasl::Step::Kind::done);
    CHECK(mechanism->credentials().authcid == "bob");
    CHECK(mechanism->credentials().password == "pw");
    CHECK(mechanism->step("\0bob\0pw"s).kind == sasl::Step::Kind::failed);
}

TEST_CASE("SASL PLAIN: an empty response to the challenge fails") {
    auto mechanism = sasl::make_server_mechanism("PLAIN");
    REQUIRE(mechanism->start(std::nullopt).kind == sasl::Step::Kind::challenge);
    sasl::Step step = mechanism->step("");
    CHECK(step.kind == sasl::Step::Kind::failed);
    CHECK_FALSE(step.error.empty());
}

TEST_CASE("SASL mechanisms refuse steps out of order") {
    auto name = GENERATE(as<std::string>{}, "PLAIN", "LOGIN");
    auto mechanism = sasl::make_server_mechanism(name);
    REQUIRE(mechanism);
    CHECK(mechanism->step("\0u\0p"s).kind == sasl::Step::Kind::failed);  // step before start
    auto again = sasl::make_server_mechanism(name);
    REQUIRE(again->start(std::nullopt).kind == sasl::Step::Kind::challenge);
    CHECK(again->start(std::nullopt).kind == sasl::Step::Kind::failed);  // started twice
}

TEST_CASE("SASL LOGIN without an initial response") {
    auto mechanism = sasl::make_server_mechanism("LOGIN");
    REQUIRE(mechanism);
    CHECK(mechanism->name() == "LOGIN");
    sasl::Step step = mechanism->start(std::nullopt);
    REQUIRE(step.kind == sasl::Step::Kind::challenge);
    CHECK(step.challenge == "Username:");
    step = mechanism->step("carol@example.test");
    REQUIRE(step.kind == sasl::Step::Kind::challenge);
    CHECK(step.challenge == "Password:");
    step = mechanism->step("pass word");
    REQUIRE(step.kind == sasl::Step::Kind::done);
    CHECK(mechanism->credentials().authzid.empty());
    CHECK(mechanism->credentials().authcid == "carol@example.test");
    CHECK(mechanism->credentials().password == "pass word");
    CHECK(mechanism->step("more").kind == sasl::Step::Kind::failed);
}

TEST_CASE("SASL LOGIN with an initial response (the user name)") {
    auto mechanism = sasl::make_server_mechanism("login");
    sasl::Step step = mechanism->start(std::string_view("dave"));
    REQUIRE(step.kind == sasl::Step::Kind::challenge);
    CHECK(step.challenge == "Password:");
    step = mechanism->step("pw");
    REQUIRE(step.kind == sasl::Step::Kind::done);
    CHECK(mechanism->credentials().authcid == "dave");
    CHECK(mechanism->credentials().password == "pw");
}

TEST_CASE("SASL LOGIN: an empty initial response still asks for the user name") {
    auto mechanism = sasl::make_server_mechanism("Login");
    sasl::Step step = mechanism->start(std::string_view{});
    REQUIRE(step.kind == sasl::Step::Kind::challenge);
    CHECK(step.challenge == "Username:");
}

TEST_CASE("SASL LOGIN rejects bad user names and passwords") {
    struct Case {
        std::string user, password;
    };
    auto c = GENERATE(values<Case>({
        {"", "pw"},
        {"a\0b"s, "pw"},
        {std::string(256, 'u'), "pw"},
        {"user", ""},
        {"user", "p\0w"s},
        {"user", std::string(256, 'p')},
    }));
    auto mechanism = sasl::make_server_mechanism("LOGIN");
    REQUIRE(mechanism->start(std::nullopt).kind == sasl::Step::Kind::challenge);
    sasl::Step step = mechanism->step(c.user);
    if (step.kind == sasl::Step::Kind::challenge) step = mechanism->step(c.password);
    CHECK(step.kind == sasl::Step::Kind::failed);
    CHECK_FALSE(step.error.empty());
    CHECK(mechanism->step("anything").kind == sasl::Step::Kind::failed);
}

TEST_CASE("SASL mechanism lookup") {
    CHECK(sasl::supported_mechanisms() == std::vector<std::string>{"PLAIN", "LOGIN"});
    for (const std::string& name : sasl::supported_mechanisms()) {
        auto mechanism = sasl::make_server_mechanism(name);
        REQUIRE(mechanism);
        CHECK(mechanism->name() == name);
    }
    CHECK(sasl::make_server_mechanism("pLaIn")->name() == "PLAIN");
    for (const char* unknown : {"CRAM-MD5", "", "PLAIN ", "PLAINX", "XOAUTH2", "LOGI"}) {
        INFO(unknown);
        CHECK(sasl::make_server_mechanism(unknown) == nullptr);
    }
}

TEST_CASE("Credentials copies are independent") {
    sasl::Credentials credentials;
    credentials.authcid = "u";
    credentials.password = "secret";
    sasl::Credentials copy = credentials;
    credentials.password.assign("other");
    CHECK(copy.password == "secret");
}
