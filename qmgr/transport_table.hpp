// The transport table (transport_maps, man transport(5)): which route qmgr
// gives mail for a remote domain — local delivery, relayd to the domain's MX
// or to a fixed next hop, or an immediate error. Pure parser and lookup.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "libmail/relay_protocol.hpp"
#include "libmail/result.hpp"

namespace facteur::qmgr {

struct Transport {
    enum class Kind {
        local,  // deliver here; `local_domain` (if set) replaces the recipient's domain
        smtp,   // relayd: `nexthop`, or the recipient's domain (MX) when unset
        error,  // no delivery: `status` (4.x.y defers, 5.x.y bounces) and `text`
    };
    Kind kind = Kind::smtp;
    std::string local_domain;
    std::optional<relay::Nexthop> nexthop;
    std::string status;
    std::string text;
};

// One transport as written after the pattern: "local", "local:domain",
// "smtp", "smtp:NEXTHOP", "relay:NEXTHOP" (NEXTHOP in relay::parse_nexthop
// syntax), "error:5.x.y text" or "error:text" (status 5.0.0).
Result<Transport> parse_transport(std::string_view text);

class TransportTable {
public:
    // Lines "pattern transport"; '#' starts a comment line; blank lines are
    // skipped. A pattern is a domain (matched case-insensitively), ".domain"
    // (any subdomain of it, not the domain itself) or "*" (everything else).
    // Any bad line makes the whole table fail, naming `source`:line.
    static Result<TransportTable> parse(std::string_view text, std::string_view source);
    // Reads and parses a file (at most kMaxFileSize bytes).
    static Result<TransportTable> load(const std::string& path);
    static constexpr size_t kMaxFileSize = 16u << 20;
    static constexpr size_t kMaxLine = 4096;

    // The route for `domain`: the exact entry, else the nearest ".parent"
    // entry (longest suffix first), else "*", else none.
    const Transport* find(std::string_view domain) const;
    size_t size() const { return exact_.size() + parents_.size() + (default_ ? 1 : 0); }

private:
    std::map<std::string, Transport, std::less<>> exact_;
    std::map<std::string, Transport, std::less<>> parents_;  // key without the leading '.'
    std::optional<Transport> default_;
};

}  // namespace facteur::qmgr
