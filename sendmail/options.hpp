// sendmail(1)'s command line, parsed like Postfix's sendmail: getopt-style
// clustered flags, the mode chosen by the program's name (mailq, newaliases)
// or by -b, and the DSN options stored in the envelope. Pure, no I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/queue.hpp"
#include "libmail/result.hpp"

namespace facteur::sendmail {

enum class Mode {
    deliver,      // -bm (default): read a message from stdin and queue it
    print_queue,  // -bp, or the name mailq
    flush_queue,  // -q
    new_aliases,  // -bi, -I, or the name newaliases
};

struct Options {
    std::string program = "sendmail";  // basename of argv[0], for messages
    Mode mode = Mode::deliver;
    bool extract_recipients = false;    // -t
    bool ignore_dots = false;           // -i, -oi
    std::optional<std::string> sender;  // -f / -r, as given ("" or "<>" = null sender)
    std::string full_name;              // -F
    std::string config_file;            // -C, else $FACTEUR_CONFIG, else the default
    int verbose = 0;                    // -v (repeatable)
    std::optional<queue::BodyType> body;  // -B 7BIT | 8BITMIME
    unsigned notify = queue::notify_default;  // -N never | success,failure,delay
    queue::Ret ret = queue::Ret::unspecified;  // -R hdrs | full
    std::string envid;                         // -V
    std::vector<std::string> recipients;       // the operands, as given
};

// argv[0] included. Errors are usage errors (EX_USAGE) and say which option.
Result<Options> parse_options(const std::vector<std::string>& argv);

// The one-line synopsis printed after a usage error.
std::string usage(std::string_view program);

// RFC 3461 §4.1 NOTIFY list as sendmail -N spells it ("never", or any of
// "success,failure,delay", case-insensitive).
Result<unsigned> parse_notify(std::string_view text);

}  // namespace facteur::sendmail
