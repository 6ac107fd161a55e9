// Unit tests for smtpd/received_header: golden Received: fields (RFC 5321
// §4.4) and RFC 3848 protocol names.
#include <catch2/catch.hpp>

#include <string>

#include "smtpd/received_header.hpp"

using namespace facteur::smtpd;

namespace {

ReceivedInfo base() {
    ReceivedInfo info;
    info.helo = "client.example.org";
    info.client_address = "192.0.2.1";
    info.myhostname = "mail.example.test";
    info.protocol = "ESMTP";
    info.queue_id = "0ABCDEFGHIJ0123400";
    info.date = "Mon, 23 Nov 2026 10:00:00 +0100";
    return info;
}

}  // namespace

TEST_CASE("Received: plain ESMTP, one recipient") {
    ReceivedInfo info = base();
    info.recipient = "bob@example.test";
    CHECK(received_header(info) ==
          "Received: from client.example.org (unknown [192.0.2.1])\r\n"
          "\tby mail.example.test (facteur) with ESMTP id 0ABCDEFGHIJ0123400\r\n"
          "\tfor <bob@example.test>; Mon, 23 Nov 2026 10:00:00 +0100\r\n");
}

TEST_CASE("Received: TLS and authentication, several recipients (no 'for')") {
    ReceivedInfo info = base();
    info.protocol = protocol_name(true, true, true);
    info.tls_version = "TLSv1.3";
    info.tls_cipher = "TLS_AES_256_GCM_SHA384";
    info.tls_bits = 256;
    CHECK(received_header(info) ==
          "Received: from client.example.org (unknown [192.0.2.1])\r\n"
          "\tby mail.example.test (facteur) with ESMTPSA id 0ABCDEFGHIJ0123400\r\n"
          "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits));\r\n"
          "\tMon, 23 Nov 2026 10:00:00 +0100\r\n");
}

TEST_CASE("Received: hostile HELO text cannot break the field") {
    ReceivedInfo info = base();
    info.helo = "evil\r\nBcc: everyone\xff";
    info.client_hostname = "ptr.example.org";
    std::string field = received_header(info);
    CHECK(field.find("from evil??Bcc:?everyone? (ptr.example.org [192.0.2.1])") != std::string::npos);
    // Only the folding CRLFs we wrote, each followed by a tab, and the last one.
    size_t crlfs = 0;
    for (size_t at = field.find("\r\n"); at != std::string::npos; at = field.find("\r\n", at + 2)) {
        ++crlfs;
        if (at + 2 < field.size()) CHECK(field[at + 2] == '\t');
    }
    CHECK(crlfs == 3);
}

TEST_CASE("RFC 3848 protocol names") {
    auto [extended, tls, authenticated, name] = GENERATE(table<bool, bool, bool, std::string>({
        {false, false, false, "SMTP"},
        {true, false, false, "ESMTP"},
        {true, true, false, "ESMTPS"},
        {true, false, true, "ESMTPA"},
        {true, true, true, "ESMTPSA"},
    }));
    CHECK(protocol_name(extended, tls, authenticated) == name);
}

TEST_CASE("header_safe caps the length") {
    CHECK(header_safe(std::string(1000, 'a')).size() == 255);
    CHECK(header_safe("a b", 10) == "a?b");
}
