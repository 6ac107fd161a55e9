// Who may relay (DESIGN §5 "no open relay"): mynetworks matching for IPv4
// and IPv6 client addresses, and detection of disguised relay addresses
// (user%other@local, "user@other"@local, other!user@local). Pure.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/address.hpp"
#include "libmail/result.hpp"

namespace facteur::smtpd {

struct Network {
    int family = 0;  // AF_INET or AF_INET6
    std::array<uint8_t, 16> bytes{};
    unsigned prefix = 0;

    std::string to_string() const;
};

// "a.b.c.d/len", "a.b.c.d", "x::y/len", "[x::y]/len", "[x::y]". A prefix of
// length 0 is refused: it would relay for everyone.
Result<Network> parse_network(std::string_view text);

class Networks {
public:
    static Result<Networks> parse(const std::vector<std::string>& entries);
    // `address` is numeric (as event::Connection reports it; IPv4-mapped
    // IPv6 already shown as IPv4). Anything unparsable matches nothing.
    bool contains(std::string_view address) const;
    const std::vector<Network>& entries() const { return networks_; }

private:
    std::vector<Network> networks_;
};

// RFC 5321 §3.6.1 / Postfix's allow_percent_hack: a local part that still
// routes ('%', '!' or '@' after unquoting) asks the host to relay again.
bool is_disguised_relay(const address::Path& path);

// What RCPT TO gets for a recipient once authd has said what it is.
enum class RelayVerdict { accept, unknown_user, relay_denied, disguised_relay };
enum class RecipientClass { local, unknown_local, remote };
RelayVerdict judge_recipient(RecipientClass recipient, bool disguised, bool may_relay);

}  // namespace facteur::smtpd
