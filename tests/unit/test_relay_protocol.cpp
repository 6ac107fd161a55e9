// qmgr <-> relayd frames and the next-hop syntax.
#include <catch2/catch.hpp>

#include "libmail/relay_protocol.hpp"

using namespace facteur;

TEST_CASE("next hops parse like Postfix's", "[relay]") {
    struct Case {
        const char* text;
        const char* host;
        uint16_t port;
        bool mx;
        bool literal;
        const char* canonical;
    };
    auto c = GENERATE(values<Case>({
        {"example.org", "example.org", 25, true, false, "example.org"},
        {"example.org:2525", "example.org", 2525, true, false, "example.org:2525"},
        {"[smtp.example.net]:587", "smtp.example.net", 587, false, false, "[smtp.example.net]:587"},
        {"[smtp.example.net]", "smtp.example.net", 25, false, false, "[smtp.example.net]"},
        {"[192.0.2.1]:25", "192.0.2.1", 25, false, true, "[192.0.2.1]"},
        {"[ipv6:2001:db8::1]:2525", "2001:db8::1", 2525, false, true, "[ipv6:2001:db8::1]:2525"},
        {"[IPv6:::1]", "::1", 25, false, true, "[ipv6:::1]"},
    }));
    auto hop = relay::parse_nexthop(c.text);
    REQUIRE(hop);
    CHECK(hop->host == c.host);
    CHECK(hop->port == c.port);
    CHECK(hop->mx_lookup == c.mx);
    CHECK(hop->literal == c.literal);
    CHECK(hop->text() == c.canonical);
    auto again = relay::parse_nexthop(hop->text());
    REQUIRE(again);
    CHECK(again->text() == hop->text());
}

TEST_CASE("bad next hops are refused with a reason", "[relay]") {
    auto text = GENERATE("", "[]", "[host", "host:", "host:0", "host:65536", "host:12ab", "[h]x", "bad host",
                         "192.0.2.1", "-dash.example", "a\r\nb", "host/x");
    auto hop = relay::parse_nexthop(text);
    CHECK_FALSE(hop);
    if (!hop) CHECK_THAT(hop.error(), Catch::Contains("next hop"));
}

TEST_CASE("relay requests round-trip and are validated", "[relay]") {
    relay::Request request;
    request.queue_id = "1J0U87VUH7M00FJP00";
    request.queue_file = "/var/spool/facteur/active/1J0U87VUH7M00FJP00";
    request.nexthop = *relay::parse_nexthop("[mx.example]:587");
    request.recipients = {0, 3, 7};
    auto decoded = relay::decode_request(relay::encode_request(request));
    REQUIRE(decoded);
    CHECK(decoded->queue_id == request.queue_id);
    CHECK(decoded->queue_file == request.queue_file);
    CHECK(decoded->nexthop.text() == "[mx.example]:587");
    CHECK(decoded->recipients == request.recipients);

    SECTION("missing or bad fields") {
        ipc::Frame frame = relay::encode_request(request);
        ipc::Frame bad;
        for (const auto& [name, value] : frame.attributes) {
            if (name == "queue_file")
                bad.add(name, "relative/path");
            else
                bad.add(name, value);
        }
        CHECK_FALSE(relay::decode_request(bad));
        ipc::Frame no_rcpt;
        no_rcpt.add("op", "relay");
        no_rcpt.add("queue_id", "X");
        no_rcpt.add("queue_file", "/q/X");
        no_rcpt.add("nexthop", "example.org");
        CHECK_FALSE(relay::decode_request(no_rcpt));
        no_rcpt.add("recipient", "-1");
        CHECK_FALSE(relay::decode_request(no_rcpt));
    }
}

TEST_CASE("relay replies round-trip; outcome and DSN class must agree", "[relay]") {
    std::vector<relay::RecipientResult> results(3);
    results[0] = {delivery::Outcome::sent, "2.0.0", "250 2.0.0 Ok: queued as X", "mx.b.test[198.51.100.2]:25", true};
    results[1] = {delivery::Outcome::deferred, "4.2.0", "host said: 451 4.2.0 try later", "mx.b.test[198.51.100.2]:25",
                  false};
    results[2] = {delivery::Outcome::bounced, "5.1.1", "550 5.1.1 no such user", "mx.b.test[198.51.100.2]:25", false};
    auto decoded = relay::decode_reply(relay::encode_reply(results), 3);
    REQUIRE(decoded);
    for (size_t i = 0; i < 3; ++i) {
        CHECK((*decoded)[i].outcome == results[i].outcome);
        CHECK((*decoded)[i].dsn == results[i].dsn);
        CHECK((*decoded)[i].reason == results[i].reason);
        CHECK((*decoded)[i].relay == results[i].relay);
        CHECK((*decoded)[i].remote_dsn == results[i].remote_dsn);
    }
    CHECK_FALSE(relay::decode_reply(relay::encode_reply(results), 2));
    results[0].dsn = "5.0.0";
    CHECK_FALSE(relay::decode_reply(relay::encode_reply(results), 3));
    auto error = relay::decode_reply(ipc::error_reply("queue file gone"), 3);
    REQUIRE_FALSE(error);
    CHECK_THAT(error.error(), Catch::Contains("queue file gone"));
}
