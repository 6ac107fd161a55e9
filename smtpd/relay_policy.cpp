// mynetworks and relay decisions (see relay_policy.hpp).
#include "smtpd/relay_policy.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <charconv>

#include <fmt/format.h>

namespace facteur::smtpd {
namespace {

bool parse_address(std::string_view text, Network& out) {
    std::string host(text);
    if (host.find(':') != std::string::npos) {
        in6_addr address{};
        if (inet_pton(AF_INET6, host.c_str(), &address) != 1) return false;
        out.family = AF_INET6;
        std::copy(address.s6_addr, address.s6_addr + 16, out.bytes.begin());
        return true;
    }
    in_addr address{};
    if (inet_pton(AF_INET, host.c_str(), &address) != 1) return false;
    out.family = AF_INET;
    const auto* raw = reinterpret_cast<const uint8_t*>(&address.s_addr);
    std::copy(raw, raw + 4, out.bytes.begin());
    return true;
}

unsigned width(int family) { return family == AF_INET ? 32 : 128; }

bool prefix_matches(const Network& network, const Network& address) {
    if (network.family != address.family) return false;
    unsigned bits = network.prefix;
    size_t whole = bits / 8;
    for (size_t i = 0; i < whole; ++i)
        if (network.bytes[i] != address.bytes[i]) return false;
    unsigned rest = bits % 8;
    if (rest == 0) return true;
    auto mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (network.bytes[whole] & mask) == (address.bytes[whole] & mask);
}

}  // namespace

std::string Network::to_string() const {
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(family, bytes.data(), text, sizeof text);
    return fmt::format("{}/{}", text, prefix);
}

Result<Network> parse_network(std::string_view text) {
    std::string_view host = text, length;
    size_t slash = text.find('/');
    if (slash != std::string_view::npos) {
        host = text.substr(0, slash);
        length = text.substr(slash + 1);
        if (length.empty()) return make_error(fmt::format("bad network {}: empty prefix length", text));
    }
    if (!host.empty() && host.front() == '[') {
        if (host.size() < 2 || host.back() != ']') return make_error(fmt::format("bad network {}: unbalanced '['", text));
        host = host.substr(1, host.size() - 2);
        if (host.find(':') == std::string_view::npos)
            return make_error(fmt::format("bad network {}: brackets are for IPv6 addresses", text));
    }
    Network network;
    if (host.empty() || !parse_address(host, network)) return make_error(fmt::format("bad network address {}", text));
    network.prefix = width(network.family);
    if (slash != std::string_view::npos) {
        unsigned value = 0;
        auto [end, error] = std::from_chars(length.data(), length.data() + length.size(), value);
        if (error != std::errc() || end != length.data() + length.size() || value > width(network.family))
            return make_error(fmt::format("bad prefix length in {}", text));
        network.prefix = value;
    }
    if (network.prefix == 0) {
        return make_error(fmt::format("mynetworks entry {} matches every address: that would relay for everyone", text));
    }
    // Host bits set below the prefix are ignored, as with Postfix's cidr
    // tables: clear them so to_string() shows the network really used.
    for (unsigned bit = network.prefix; bit < width(network.family); ++bit)
        network.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    return network;
}

Result<Networks> Networks::parse(const std::vector<std::string>& entries) {
    Networks networks;
    for (const std::string& entry : entries) {
        auto network = parse_network(entry);
        if (!network) return make_error(network.error());
        networks.networks_.push_back(*network);
    }
    return networks;
}

bool Networks::contains(std::string_view address) const {
    Network parsed;
    if (address.empty() || !parse_address(address, parsed)) return false;
    for (const Network& network : networks_)
        if (prefix_matches(network, parsed)) return true;
    return false;
}

bool is_disguised_relay(const address::Path& path) {
    if (path.is_null) return false;
    return path.local_part.find_first_of("%!@") != std::string::npos;
}

RelayVerdict judge_recipient(RecipientClass recipient, bool disguised, bool may_relay) {
    switch (recipient) {
        case RecipientClass::local:
        case RecipientClass::unknown_local:
            // A routing local part at one of our domains asks us to relay
            // on: refused even to trusted clients (they can say it plainly).
            if (disguised) return RelayVerdict::disguised_relay;
            return recipient == RecipientClass::local ? RelayVerdict::accept : RelayVerdict::unknown_user;
        case RecipientClass::remote:
            return may_relay ? RelayVerdict::accept : RelayVerdict::relay_denied;
    }
    return RelayVerdict::relay_denied;
}

}  // namespace facteur::smtpd
