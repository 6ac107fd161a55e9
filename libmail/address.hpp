// Mail addresses: RFC 5321 SMTP paths (MAIL FROM / RCPT TO arguments) and
// RFC 5322 header address lists, with SMTPUTF8 (RFC 6531/6532). Pure parsers, no I/O.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libmail/result.hpp"

namespace facteur::address {

// RFC 5321 §4.5.3.1.1-3, counted in octets as they appear on the wire.
inline constexpr size_t max_local_part_length = 64;
inline constexpr size_t max_domain_length = 255;
inline constexpr size_t max_path_length = 256;  // including "<", ">" and any source route
inline constexpr size_t max_label_length = 63;  // RFC 1035 §2.3.4
// A header value longer than this is refused rather than parsed: a folded To:
// with a thousand recipients still fits.
inline constexpr size_t max_header_value_length = 64 * 1024;
// Bounds the work spent on one MAIL/RCPT line (and the duplicate check).
inline constexpr size_t max_esmtp_parameters = 32;
// RFC 5322 comments nest; deeper than this is hostile, not mail.
inline constexpr size_t max_comment_depth = 32;

struct PathOptions {
    bool allow_null = false;        // "<>" accepted (MAIL FROM only, RFC 5321 §4.5.5)
    bool allow_utf8 = false;        // the client said SMTPUTF8 (RFC 6531 §3.3)
    bool allow_postmaster = false;  // "<Postmaster>" without a domain (RCPT only, RFC 5321 §4.1.1.3)
};

// An SMTP reverse-path or forward-path.
struct Path {
    std::string local_part;          // decoded: quotes and quoted-pairs removed
    std::string domain;              // a domain name, or an address literal with its brackets: "[IPv6:::1]"
    bool is_null = false;            // "<>"
    bool quoted = false;             // the local part was sent as a quoted-string
    bool domain_is_literal = false;  // domain is "[...]"
    bool had_source_route = false;   // "<@a,@b:user@c>": the route was dropped (RFC 5321 §3.3, appendix C)

    // Canonical text without angle brackets: the local part as a dot-string,
    // quoted only when it has to be. "" for the null path; "Postmaster" for
    // the bare postmaster path.
    std::string to_string() const;
    // to_string() with the domain lowercased, for lookups (the local part
    // stays as is: RFC 5321 §2.4 lets the receiving host decide its case).
    std::string normalized() const;
};

// `text` is the "<...>" part of a MAIL FROM or RCPT TO argument.
Result<Path> parse_path(std::string_view text, PathOptions options);

// ESMTP parameters in order, keywords uppercased (they are case-insensitive),
// values as sent; a parameter without "=" has an empty value.
using MailParameters = std::vector<std::pair<std::string, std::string>>;

// RFC 5321 §4.1.2 Mail-parameters / Rcpt-parameters: "KEY=VALUE KEY2 ...".
// Runs of spaces and trailing spaces are tolerated; duplicates are refused.
Result<MailParameters> parse_esmtp_parameters(std::string_view text);

// The value of `keyword` (case-insensitive), if the client sent it.
std::optional<std::string_view> find_parameter(const MailParameters& parameters, std::string_view keyword);

// Everything after "MAIL FROM:" or "RCPT TO:": one optional space (many
// clients send "MAIL FROM: <a@b>"), the path, then optional parameters.
Result<std::pair<Path, MailParameters>> parse_mail_argument(std::string_view after_colon, PathOptions options);

// One mailbox from an RFC 5322 header.
struct Mailbox {
    std::string display_name;  // phrase decoded: quotes removed, comments dropped, whitespace collapsed
    std::string local_part;    // decoded
    std::string domain;        // as written (atoms joined by "."), or "[literal]"
    std::string group;         // name of the enclosing group, or empty

    // "local@domain", the local part quoted only when it has to be.
    std::string address() const;
};

// RFC 5322 §3.4 address-list (a To:/Cc:/From:/Reply-To: value), including the
// obsolete forms of §4.4 (routes, empty list elements, phrases with dots).
// Members of a group carry its name; an empty group ("undisclosed-recipients:;")
// contributes no mailbox. Encoded words (RFC 2047) are left as they are.
// Domains follow RFC 5322 (atoms), not DNS syntax: check them with
// is_valid_domain() or parse_path() before using them in SMTP.
Result<std::vector<Mailbox>> parse_address_list(std::string_view header_value);
// Exactly one mailbox (a Sender: value), no group.
Result<Mailbox> parse_mailbox(std::string_view header_value);

// RFC 5321 §4.1.2 Domain (LDH labels, no trailing dot, length limits); with
// allow_utf8, labels may also hold UTF-8 (RFC 6531 U-labels).
bool is_valid_domain(std::string_view domain, bool allow_utf8);
// Same check, with the reason on failure.
Status check_domain(std::string_view domain, bool allow_utf8);
// ASCII letters lowercased; UTF-8 bytes untouched. An IPv6 address literal
// keeps its "IPv6:" tag spelled as in RFC 5321 §4.1.3.
std::string lowercase_domain(std::string_view domain);

}  // namespace facteur::address
