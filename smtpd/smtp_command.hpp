// The SMTP command line parser (RFC 5321 §4.1): one received line in, the
// verb and its argument out. Pure, no I/O; fuzzed by tests/fuzz/fuzz_smtp_command.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "libmail/result.hpp"

namespace facteur::smtpd {

enum class Verb { helo, ehlo, mail, rcpt, data, bdat, rset, noop, quit, help, vrfy, expn, turn, etrn, starttls, auth, unknown };

enum class CommandError {
    none,
    bad_line_ending,  // a bare LF (DESIGN §5: commands accept only CRLF)
    bad_character,    // NUL, bare CR or another control character
    unknown_command,  // 500 5.5.2
    syntax,           // 501 5.5.4
};

struct Command {
    Verb verb = Verb::unknown;
    std::string_view name;      // the verb as sent
    std::string_view argument;  // MAIL/RCPT: after "FROM:"/"TO:"; others: after the verb, trimmed
    CommandError error = CommandError::none;
    std::string_view error_text;  // why, when error != none (static text)
};

// `line` as read from the connection, normally ending in CRLF; a line
// without any line ending is parsed as if it had one.
Command parse_command(std::string_view line);

std::string_view verb_name(Verb verb);

// MAIL FROM / RCPT TO argument (after the colon) split into the "<path>"
// and the parameter text, so a bad address (501 5.1.x) and a bad
// parameter (501 5.5.4) get different replies. One optional space before
// the path is tolerated (RFC 5321 §4.1.2 does not allow it; many clients
// send it). The path ends at the first '>' outside a quoted string.
struct MailArgument {
    std::string_view path;
    std::string_view parameters;
};
Result<MailArgument> split_mail_argument(std::string_view after_colon);

// RFC 3030 §2: "BDAT" SP chunk-size [ SP end-marker ].
struct BdatArgument {
    uint64_t size = 0;
    bool last = false;
};
Result<BdatArgument> parse_bdat_argument(std::string_view argument);

// RFC 4954 §4: "AUTH" SP sasl-mech [SP initial-response]; the response is
// still base64 ("=" for an empty one).
struct AuthArgument {
    std::string_view mechanism;
    std::optional<std::string_view> initial_response;
};
Result<AuthArgument> parse_auth_argument(std::string_view argument);

// RFC 1985 §5: "ETRN" SP [ "@" / "#" ] domain. "@domain" asks for the
// domain and its subdomains, "#name" for a named queue.
struct EtrnArgument {
    enum class Kind { domain, subdomains, queue };
    Kind kind = Kind::domain;
    std::string_view name;  // without the '@' or '#'
};
Result<EtrnArgument> parse_etrn_argument(std::string_view argument);

}  // namespace facteur::smtpd
