// The delivered message: CRLF -> LF at any chunking, trace fields, loop
// detection, server-only header fields, and the errno -> status mapping.
#include <catch2/catch.hpp>

#include <cerrno>

#include "deliverd/delivered_message.hpp"
#include "deliverd/delivery_agent.hpp"

using namespace facteur;
using namespace facteur::deliverd;

TEST_CASE("CRLF becomes LF wherever the chunks split") {
    auto [input, expected] = GENERATE(table<std::string, std::string>({
        {"a\r\nb\r\n", "a\nb\n"},
        {"\r\n\r\n", "\n\n"},
        {"lone\rcr\r\n", "lone\rcr\n"},
        {"ends in cr\r", "ends in cr\r"},
        {"\r\r\n", "\r\n"},
        {"lf only\n", "lf only\n"},
        {"", ""},
    }));
    CAPTURE(input);
    for (size_t split = 0; split <= input.size(); ++split) {
        CrlfToLf converter;
        std::string out = converter.convert(input.substr(0, split));
        out += converter.convert(input.substr(split));
        out += converter.finish();
        CHECK(out == expected);
    }
}

TEST_CASE("trace fields: Return-Path with angle brackets, <> for the null sender") {
    CHECK(trace_fields("alice@example.test", "bob@example.test") ==
          "Return-Path: <alice@example.test>\nDelivered-To: bob@example.test\n");
    CHECK(trace_fields("", "bob@example.test") == "Return-Path: <>\nDelivered-To: bob@example.test\n");
}

TEST_CASE("a Delivered-To naming the recipient means a loop") {
    std::string header =
        "Received: from x\r\nDelivered-To: carol@example.test\r\nDelivered-To:\r\n  <Bob@Example.TEST>\r\n\r\n";
    CHECK(already_delivered_to(header, "bob@example.test"));
    CHECK(already_delivered_to(header, "carol@example.test"));
    CHECK_FALSE(already_delivered_to(header, "dave@example.test"));
    CHECK_FALSE(already_delivered_to("Subject: Delivered-To: dave@example.test\r\n\r\n", "dave@example.test"));
}

TEST_CASE("server-only fields are removed, per destination") {
    std::string header =
        "Return-Path: <forged@x>\r\nSubject: s\r\nStatus: RO\r\nX-Status: A\r\nX-UID: 7\r\nX-Keywords: $x\r\n"
        "X-IMAP: 1 2\r\nX-IMAPbase: 1 2\r\nContent-Length: 99\r\nreturn-path: <again@x>\r\n  folded\r\nTo: t\r\n\r\n";
    CHECK(strip_server_fields(header, Destination::maildir) ==
          "Subject: s\r\nStatus: RO\r\nX-Status: A\r\nX-UID: 7\r\nX-Keywords: $x\r\nX-IMAP: 1 2\r\nX-IMAPbase: 1 2\r\n"
          "Content-Length: 99\r\nTo: t\r\n\r\n");
    CHECK(strip_server_fields(header, Destination::mbox) == "Subject: s\r\nTo: t\r\n\r\n");
    CHECK(strip_server_fields(header, Destination::pipe) ==
          strip_server_fields(header, Destination::maildir));
}

TEST_CASE("store write errors map to RFC 3463 statuses") {
    using delivery::Outcome;
    auto [os_error, permanent, outcome, dsn] = GENERATE(table<int, bool, Outcome, std::string>({
        {ENOSPC, false, Outcome::deferred, "4.3.1"},
        {ENOSPC, true, Outcome::deferred, "4.3.1"},
        {EDQUOT, false, Outcome::deferred, "4.2.2"},
        {EDQUOT, true, Outcome::bounced, "5.2.2"},
        {EFBIG, false, Outcome::deferred, "4.2.2"},
        {EAGAIN, false, Outcome::deferred, "4.2.0"},
        {EACCES, true, Outcome::deferred, "4.3.0"},
        {EIO, false, Outcome::deferred, "4.3.0"},
        {0, false, Outcome::deferred, "4.3.0"},
    }));
    CAPTURE(os_error, permanent);
    auto result = write_failure_result(store::WriteOutcome::failure(os_error, "what happened"), permanent);
    CHECK(result.outcome == outcome);
    CHECK(result.dsn == dsn);
    CHECK(result.reason.find("what happened") != std::string::npos);
    if (os_error == ENOSPC) CHECK(result.reason.rfind("mail system full", 0) == 0);
    if (os_error == EDQUOT) CHECK(result.reason.rfind("mailbox full", 0) == 0);
}
