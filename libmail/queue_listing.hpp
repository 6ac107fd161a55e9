// The queue listing shown by `facteur queue list` and mailq(1): one text
// format (after Postfix's mailq) and one JSON-lines format (after
// `postqueue -j`), shared by the two programs so they never drift apart.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "libmail/queue_control.hpp"

namespace facteur::queue_listing {

// "Mon Nov 23 10:00:00" in local time, like Postfix's mailq.
std::string format_arrival(int64_t unix_time);

// Postfix's marker after the queue id: '*' active, '!' on hold, ' ' otherwise.
char folder_marker(std::string_view folder);

// The mailq table:
//   -Queue ID--------- --Size-- ----Arrival Time---- -Folder- -Sender/Recipient-------
//   0K3M5N7P9R0000A1B2*   1234 Mon Nov 23 10:00:00  active   alice@example.org
//                                                   deferred bob@example.net
//                                                            (4.4.1 connect to mx.example.net: refused)
// then a blank line per message and "-- 2 Kbytes in 1 Request." (or
// "Mail queue is empty"). The null sender reads MAILER-DAEMON. Every text
// that came from the network is made printable (no terminal escapes).
std::string format_text(const queue_control::Listing& listing);

// One JSON object per line per message, then nothing else; a truncated
// listing adds a final {"truncated": N} line. Strings are escaped as JSON;
// bytes that are not UTF-8 become U+FFFD.
std::string format_json(const queue_control::Listing& listing);

// A JSON string literal (with the quotes).
std::string json_string(std::string_view text);

}  // namespace facteur::queue_listing
