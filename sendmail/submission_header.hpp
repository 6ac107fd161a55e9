// What sendmail decides from the header and the command line: the envelope
// sender and recipients (-f, operands, -t), and the header it writes (trace
// field prepended, Bcc removed, From/Date/Message-ID added when missing).
// Pure functions; the caller supplies the host name, login and clock.
#pragma once

#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.hpp"

namespace facteur::sendmail {

// Past this many recipients a submission is refused (the envelope record of
// a queue file is bounded too).
inline constexpr size_t kMaxRecipients = 10000;

// One recipient operand: an RFC 5322 address list ("a@x, Bob <b@y>"), or
// bare local parts ("bob", "bob, alice") that get "@hostname". Each address
// is checked as an SMTP forward-path and returned in canonical form.
Result<std::vector<std::string>> parse_recipient_argument(std::string_view argument, std::string_view hostname);

// The envelope sender: -f/-r when given ("" or "<>" is the null sender,
// RFC 5321 §4.5.5; a bare local part gets "@hostname"), else login@hostname.
Result<std::string> envelope_sender(const std::optional<std::string>& option, std::string_view login,
                                    std::string_view hostname);

// -t: the addresses of To, Cc and Bcc — or of Resent-To, Resent-Cc and
// Resent-Bcc when the message has any of those (RFC 5322 §3.6.6, as
// Postfix does). Group members count; empty groups add nothing.
Result<std::vector<std::string>> header_recipients(std::string_view header, std::string_view hostname);

// Adds `addresses` to `recipients`, skipping duplicates (compared with the
// domain lowercased); fails past kMaxRecipients.
Status add_recipients(std::vector<std::string>& recipients, const std::vector<std::string>& addresses);

struct HeaderContext {
    std::string queue_id;
    std::string hostname;      // myhostname
    std::string login;         // the submitting user's login name
    std::string from_address;  // for a missing From: (the envelope sender, or login@hostname)
    std::string full_name;     // its display name (-F, else the passwd GECOS name); may be empty
    std::time_t now = 0;
};

// The header sendmail writes into the queue file: every line CRLF, no
// empty separator line.
//   Received: (from login@localhost) by hostname (facteur) id QUEUEID; date   (RFC 5321 §4.4)
//   ...the message's fields, Bcc and Resent-Bcc removed (RFC 5322 §3.6.3)...
//   From: / Date: / Message-ID: <QUEUEID@hostname>, each only when missing
//   (RFC 5322 §3.6: From and Date are required; Message-ID should be there).
std::string rewrite_header(std::string_view header, const HeaderContext& context);

// A display name as an RFC 5322 phrase: atoms as they are, otherwise a
// quoted-string; non-ASCII text as an RFC 2047 encoded word (UTF-8, base64).
std::string format_display_name(std::string_view name);

}  // namespace facteur::sendmail
