// RFC 5322 header helpers.
#include <catch2/catch.hpp>

#include "libmail/message_header.hpp"

using namespace facteur::message;

TEST_CASE("header_length finds the empty line (CRLF or LF)") {
    CHECK(header_length("A: b\r\n\r\nbody") == 8);
    CHECK(header_length("A: b\n\nbody") == 6);
    CHECK(header_length("A: b\r\n c\r\n\r\n") == 12);
    CHECK(header_length("A: b\r\n") == 6);  // all header
    CHECK(header_length("not a header\r\n\r\n") == 0);
    CHECK(header_length("\r\nbody") == 2);
    CHECK(header_length("") == 0);
}

TEST_CASE("fields are parsed with their continuation lines") {
    std::string header = "Received: from a\r\n\tby b\r\nSubject: hi\r\nreceived: x\r\nbogus line\r\n\r\n";
    auto fields = parse_header(header);
    REQUIRE(fields.size() == 3);
    CHECK(fields[0].name == "Received");
    CHECK(fields[0].raw == "Received: from a\r\n\tby b\r\n");
    CHECK(fields[0].value == " from a\r\n\tby b");
    CHECK(count_fields(header, "RECEIVED") == 2);
    CHECK(has_field(header, "subject"));
    CHECK_FALSE(has_field(header, "Message-ID"));
    CHECK(field_value(header, "received") == "from a\tby b");
}

TEST_CASE("remove_fields keeps everything else byte for byte") {
    std::string message = "Return-Path: <x>\r\nSubject: s\r\nStatus: RO\r\n more\r\nX: y\r\n\r\nReturn-Path: body\r\n";
    CHECK(remove_fields(message, {"return-path", "status"}) == "Subject: s\r\nX: y\r\n\r\nReturn-Path: body\r\n");
    CHECK(remove_fields("body only", {"x"}) == "body only");
}

TEST_CASE("dates follow RFC 5322 section 3.3") {
    setenv("TZ", "UTC", 1);
    tzset();
    CHECK(format_date(0) == "Thu, 1 Jan 1970 00:00:00 +0000");
    CHECK(format_date(1795428000) == "Mon, 23 Nov 2026 10:00:00 +0000");
}
