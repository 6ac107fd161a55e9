// sendmail's addresses (-f, operands, -t headers) and the header it writes.
#include <stdlib.h>
#include <time.h>

#include <catch2/catch.hpp>

#include "sendmail/submission_header.hpp"

using namespace facteur;
using namespace facteur::sendmail;

namespace {

const std::string kHost = "host.example";

std::vector<std::string> list(std::initializer_list<const char*> items) { return {items.begin(), items.end()}; }

}  // namespace

TEST_CASE("recipient operands", "[sendmail][header]") {
    auto [operand, expected] = GENERATE(table<std::string, std::vector<std::string>>({
        {"bob@example.org", list({"bob@example.org"})},
        {"bob", list({"bob@host.example"})},
        {"bob, alice", list({"bob@host.example", "alice@host.example"})},
        {"Bob <bob@example.org>", list({"bob@example.org"})},
        {"a@x.example, Carol <c@y.example>", list({"a@x.example", "c@y.example"})},
        {"team: a@x.example, b@x.example;", list({"a@x.example", "b@x.example"})},
        {"\"john doe\"@example.org", list({"\"john doe\"@example.org"})},
        {"bob@[192.0.2.1]", list({"bob@[192.0.2.1]"})},
        {"j\xc3\xb6rg@example.org", list({"j\xc3\xb6rg@example.org"})},
    }));
    auto parsed = parse_recipient_argument(operand, kHost);
    INFO(operand);
    REQUIRE(parsed);
    CHECK(*parsed == expected);
}

TEST_CASE("bad recipient operands are refused", "[sendmail][header]") {
    auto operand = GENERATE(as<std::string>{}, "", " ", "bob@", "@example.org", "a@b@c", "Bob <bob", "bob@exa mple.org",
                            "bob@-bad-.example", "undisclosed:;", "b\r\nob", "bob@example.org>");
    INFO(operand);
    auto parsed = parse_recipient_argument(operand, kHost);
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().find("recipient") != std::string::npos);
}

TEST_CASE("the envelope sender", "[sendmail][header]") {
    CHECK(*envelope_sender(std::nullopt, "alice", kHost) == "alice@host.example");
    CHECK(*envelope_sender(std::string("bob@example.org"), "alice", kHost) == "bob@example.org");
    CHECK(*envelope_sender(std::string("<bob@example.org>"), "alice", kHost) == "bob@example.org");
    CHECK(*envelope_sender(std::string("bob"), "alice", kHost) == "bob@host.example");
    CHECK(envelope_sender(std::string(""), "alice", kHost)->empty());
    CHECK(envelope_sender(std::string("<>"), "alice", kHost)->empty());
    CHECK_FALSE(envelope_sender(std::string("bob@@x"), "alice", kHost));
    CHECK_FALSE(envelope_sender(std::string("Bob <bob@example.org>"), "alice", kHost));
}

TEST_CASE("-t collects To, Cc and Bcc", "[sendmail][header]") {
    SECTION("plain lists, groups, folding, several fields") {
        std::string header =
            "From: alice@example.org\r\n"
            "To: Bob <bob@example.org>,\r\n\t\"Carol C.\" <carol@example.org>\r\n"
            "Cc: friends: dave@example.net, erin@example.net;, undisclosed-recipients:;\r\n"
            "Bcc: frank@example.com\r\n"
            "To: grace@example.org\r\n"
            "Reply-To: nobody@example.org\r\n"
            "Subject: To: trap@example.org\r\n";
        auto recipients = header_recipients(header, kHost);
        REQUIRE(recipients);
        CHECK(*recipients == list({"bob@example.org", "carol@example.org", "dave@example.net", "erin@example.net",
                                   "frank@example.com", "grace@example.org"}));
    }
    SECTION("bare local parts get the host name") {
        auto recipients = header_recipients("To: bob\r\nCc: carol, dave\r\n", kHost);
        REQUIRE(recipients);
        CHECK(*recipients == list({"bob@host.example", "carol@host.example", "dave@host.example"}));
    }
    SECTION("an empty Bcc is allowed (RFC 5322 §3.6.3)") {
        auto recipients = header_recipients("To: bob@example.org\r\nBcc:\r\n", kHost);
        REQUIRE(recipients);
        CHECK(*recipients == list({"bob@example.org"}));
    }
    SECTION("Resent- fields win when present (RFC 5322 §3.6.6)") {
        auto recipients = header_recipients(
            "Resent-To: new@example.org\r\nResent-Bcc: hidden@example.org\r\nTo: old@example.org\r\n", kHost);
        REQUIRE(recipients);
        CHECK(*recipients == list({"new@example.org", "hidden@example.org"}));
    }
    SECTION("no recipient fields") {
        auto recipients = header_recipients("Subject: hi\r\n", kHost);
        REQUIRE(recipients);
        CHECK(recipients->empty());
    }
    SECTION("a broken address list is an error naming the field") {
        auto recipients = header_recipients("To: ok@example.org\r\nCc: Bob <bob@example.org\r\n", kHost);
        REQUIRE_FALSE(recipients);
        CHECK(recipients.error().rfind("Cc: header", 0) == 0);
    }
}

TEST_CASE("recipients are deduplicated and bounded", "[sendmail][header]") {
    std::vector<std::string> recipients{"bob@Example.org"};
    REQUIRE(add_recipients(recipients, {"bob@example.ORG", "Bob@example.org", "carol@example.org", "carol@example.org"}));
    CHECK(recipients == list({"bob@Example.org", "Bob@example.org", "carol@example.org"}));

    std::vector<std::string> many;
    std::vector<std::string> addresses;
    for (size_t i = 0; i <= kMaxRecipients; ++i) addresses.push_back("u" + std::to_string(i) + "@example.org");
    Status status = add_recipients(many, addresses);
    REQUIRE_FALSE(status);
    CHECK(status.error().find("more than") != std::string::npos);
}

TEST_CASE("display names", "[sendmail][header]") {
    auto [name, expected] = GENERATE(table<std::string, std::string>({
        {"Alice Liddell", "Alice Liddell"},
        {"  Alice  ", "Alice"},
        {"Alice B. Liddell", "\"Alice B. Liddell\""},
        {"Liddell, Alice", "\"Liddell, Alice\""},
        {"Say \"hi\" \\o/", "\"Say \\\"hi\\\" \\\\o/\""},
        {"Two  spaces", "\"Two  spaces\""},
        {"J\xc3\xb6rg", "=?UTF-8?B?SsO2cmc=?="},
    }));
    CHECK(format_display_name(name) == expected);
}

TEST_CASE("long non-ASCII names become several encoded words", "[sendmail][header]") {
    std::string name;
    for (int i = 0; i < 40; ++i) name += "\xc3\xa9";  // 80 bytes of é
    std::string encoded = format_display_name(name);
    size_t words = 0;
    size_t position = 0;
    while (position < encoded.size()) {
        size_t end = encoded.find(' ', position);
        if (end == std::string::npos) end = encoded.size();
        std::string word = encoded.substr(position, end - position);
        CHECK(word.size() <= 75);  // RFC 2047 §2
        CHECK(word.rfind("=?UTF-8?B?", 0) == 0);
        ++words;
        position = end + 1;
    }
    CHECK(words == 2);
}

TEST_CASE("the header sendmail writes", "[sendmail][header]") {
    setenv("TZ", "UTC", 1);
    tzset();
    HeaderContext context;
    context.queue_id = "1J0TP8I412G00NJF00";
    context.hostname = kHost;
    context.login = "alice";
    context.from_address = "alice@host.example";
    context.full_name = "Alice Liddell";
    context.now = 1795426539;

    SECTION("missing fields are added, Bcc removed, Received on top") {
        std::string header = "Subject: hi\r\nBcc: secret@example.org,\r\n other@example.org\r\nTo: bob@example.org\r\n"
                             "resent-bcc: also@example.org\r\n";
        CHECK(rewrite_header(header, context) ==
              "Received: (from alice@localhost)\r\n"
              "\tby host.example (facteur) id 1J0TP8I412G00NJF00;\r\n"
              "\tMon, 23 Nov 2026 09:35:39 +0000\r\n"
              "Subject: hi\r\n"
              "To: bob@example.org\r\n"
              "From: Alice Liddell <alice@host.example>\r\n"
              "Date: Mon, 23 Nov 2026 09:35:39 +0000\r\n"
              "Message-ID: <1J0TP8I412G00NJF00@host.example>\r\n");
    }
    SECTION("present fields are kept as they are") {
        std::string header = "from: Me <me@example.org>\r\nDATE: Tue, 1 Jan 2030 00:00:00 +0000\r\n"
                             "Message-Id: <x@y>\r\nTo: bob@example.org\r\n";
        std::string out = rewrite_header(header, context);
        CHECK(out.find("Received: (from alice@localhost)") == 0);
        CHECK(out.substr(out.find("from: Me")) == header);
    }
    SECTION("an empty header still gets From, Date and Message-ID") {
        context.full_name.clear();
        std::string out = rewrite_header("", context);
        CHECK(out.find("\r\nFrom: alice@host.example\r\n") != std::string::npos);
        CHECK(out.find("\r\nDate: Mon, 23 Nov 2026 09:35:39 +0000\r\n") != std::string::npos);
        CHECK(out.find("\r\nMessage-ID: <1J0TP8I412G00NJF00@host.example>\r\n") != std::string::npos);
    }
    SECTION("a hostile login cannot break the trace comment") {
        context.login = "ev(il)\\";
        CHECK(rewrite_header("", context).find("Received: (from ev?il??@localhost)") == 0);
    }
}
