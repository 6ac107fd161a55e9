// The mailq / `facteur queue list` text and JSON formats, as golden text.
#include <stdlib.h>
#include <time.h>

#include <catch2/catch.hpp>

#include "libmail/queue_listing.hpp"

using namespace facteur;
using namespace facteur::queue_listing;

namespace {

// Arrival times are shown in local time: pin the zone.
struct UtcZone {
    UtcZone() {
        setenv("TZ", "UTC", 1);
        tzset();
    }
};

queue_control::Listing sample() {
    queue_control::Listing listing;
    queue_control::MessageInfo deferred;
    deferred.id = "1J0TP8I412G00NJF00";
    deferred.folder = "deferred";
    deferred.size = 1234;
    deferred.arrival = 1795426539;  // Mon Nov 23 09:35:39 2026 UTC
    deferred.sender = "alice@example.org";
    deferred.recipients.push_back({"bob@example.net", "deferred", "4.4.1", "connect to mx.example.net: refused"});
    deferred.recipients.push_back({"carol@example.org", "sent", "2.0.0", ""});
    listing.messages.push_back(deferred);
    queue_control::MessageInfo held;
    held.id = "1J0TP8I412G00NJF01";
    held.folder = "hold";
    held.size = 2000;
    held.arrival = 1795426540;
    held.sender = "";
    held.recipients.push_back({"dave@example.org", "pending", "", ""});
    listing.messages.push_back(held);
    queue_control::MessageInfo active = held;
    active.id = "1J0TP8I412G00NJF02";
    active.folder = "active";
    active.sender = "evil\x1b[2J@example.org";
    active.size = 10;
    listing.messages.push_back(active);
    return listing;
}

}  // namespace

TEST_CASE("an empty queue says so", "[queue_listing]") {
    CHECK(format_text({}) == "Mail queue is empty\n");
    CHECK(format_json({}).empty());
}

TEST_CASE("the text listing looks like Postfix's mailq", "[queue_listing]") {
    UtcZone utc;
    std::string expected =
        "-Queue ID---------  --Size-- ----Arrival Time----  -Folder- -Sender/Recipient-------\n"
        "1J0TP8I412G00NJF00      1234 Mon Nov 23 09:35:39   deferred alice@example.org\n"
        "                                                   deferred bob@example.net\n"
        "                                                            (4.4.1 connect to mx.example.net: refused)\n"
        "                                                   sent     carol@example.org\n"
        "\n"
        "1J0TP8I412G00NJF01!     2000 Mon Nov 23 09:35:40   hold     MAILER-DAEMON\n"
        "                                                   pending  dave@example.org\n"
        "\n"
        "1J0TP8I412G00NJF02*       10 Mon Nov 23 09:35:40   active   evil\\x1b[2J@example.org\n"
        "                                                   pending  dave@example.org\n"
        "\n"
        "-- 4 Kbytes in 3 Requests.\n";
    CHECK(format_text(sample()) == expected);
}

TEST_CASE("a truncated listing says how many were left out", "[queue_listing]") {
    UtcZone utc;
    queue_control::Listing listing = sample();
    listing.messages.resize(1);
    listing.truncated = 5;
    std::string text = format_text(listing);
    CHECK(text.find("-- 5 more messages not listed\n") != std::string::npos);
    CHECK(text.find("-- 2 Kbytes in 1 Request.\n") != std::string::npos);
    CHECK(format_json(listing).find("{\"truncated\": 5}\n") != std::string::npos);
}

TEST_CASE("the JSON listing has one object per line", "[queue_listing]") {
    queue_control::Listing listing = sample();
    listing.messages.resize(1);
    CHECK(format_json(listing) ==
          "{\"queue_name\": \"deferred\", \"queue_id\": \"1J0TP8I412G00NJF00\", \"arrival_time\": 1795426539, "
          "\"message_size\": 1234, \"sender\": \"alice@example.org\", \"next_attempt\": 0, \"recipients\": ["
          "{\"address\": \"bob@example.net\", \"state\": \"deferred\", \"dsn\": \"4.4.1\", \"delay_reason\": "
          "\"connect to mx.example.net: refused\"}, {\"address\": \"carol@example.org\", \"state\": \"sent\", "
          "\"dsn\": \"2.0.0\", \"delay_reason\": \"\"}]}\n");
}

TEST_CASE("JSON strings are escaped and always UTF-8", "[queue_listing]") {
    auto [input, expected] = GENERATE(table<std::string, std::string>({
        {"plain", "\"plain\""},
        {"quote\" back\\slash", "\"quote\\\" back\\\\slash\""},
        {"line\r\nbreak\ttab", "\"line\\r\\nbreak\\ttab\""},
        {std::string("nul\0x", 5), "\"nul\\u0000x\""},
        {"esc\x1b", "\"esc\\u001b\""},
        {"del\x7f", "\"del\\u007f\""},
        {"caf\xc3\xa9", "\"caf\xc3\xa9\""},
        {"\xf0\x9f\x93\xae", "\"\xf0\x9f\x93\xae\""},
        {"bad\xff", "\"bad\\ufffd\""},
        {"overlong\xc0\xaf", "\"overlong\\ufffd\\ufffd\""},
        {"surrogate\xed\xa0\x80", "\"surrogate\\ufffd\\ufffd\\ufffd\""},
        {"cut\xe2\x82", "\"cut\\ufffd\\ufffd\""},
    }));
    CHECK(json_string(input) == expected);
}

TEST_CASE("folder markers follow Postfix", "[queue_listing]") {
    CHECK(folder_marker("active") == '*');
    CHECK(folder_marker("hold") == '!');
    CHECK(folder_marker("deferred") == ' ');
    CHECK(folder_marker("incoming") == ' ');
}
