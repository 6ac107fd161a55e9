// DNS on the event loop with c-ares (DESIGN §2 `dns`): MX (with RFC 7505
// null MX), A/AAAA and PTR lookups for relayd (and later smtpd's reverse
// lookups). The servers are configurable (dns_resolvers) so tests point it at
// a local DNS server; by default c-ares reads /etc/resolv.conf.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "libmail/event.hpp"
#include "libmail/result.hpp"

namespace facteur::dns {

// How a lookup ended. not_found: NXDOMAIN (the name does not exist).
// no_data: the name exists but has no record of the asked type (NOERROR,
// empty answer). temporary: SERVFAIL, REFUSED, timeout, no server reachable,
// malformed answer — worth retrying later.
enum class Status { ok, not_found, no_data, temporary };
std::string_view status_name(Status status);

struct MxRecord {
    uint16_t preference = 0;
    std::string host;  // lowercase, without the trailing dot
};

struct MxAnswer {
    Status status = Status::temporary;
    // Sorted by preference; records of equal preference in random order
    // (RFC 5321 §5.1). Empty unless status is ok.
    std::vector<MxRecord> records;
    // RFC 7505: the only record is "0 ." — the domain accepts no mail.
    // status is ok and records is empty then.
    bool null_mx = false;
    std::string error;  // for logs and DSNs when status is not ok
};

struct AddressAnswer {
    Status status = Status::temporary;
    // Numeric addresses ("2001:db8::1", "192.0.2.1"): every IPv6 address
    // first (when asked for), then every IPv4 address, each family in the
    // server's order. ok means at least one address.
    std::vector<std::string> addresses;
    std::string error;
};

struct NameAnswer {
    Status status = Status::temporary;
    std::vector<std::string> names;  // PTR targets, lowercase, no trailing dot
    std::string error;
};

struct Options {
    // "192.0.2.53", "192.0.2.53:5353", "[2001:db8::53]:53", "::1". Empty:
    // the system configuration (/etc/resolv.conf).
    std::vector<std::string> servers;
    std::chrono::milliseconds timeout{5000};  // per try
    int tries = 3;
};

// One c-ares channel driven by the libevent loop (its sockets are watched
// with events, its timeouts with a timer). Callbacks run on the loop, never
// from inside the call that started the lookup; destroying the Resolver
// cancels what is pending without running those callbacks.
class Resolver {
public:
    // Fails for a server that is not a numeric address[:port] or when
    // c-ares cannot be initialised.
    static Result<std::unique_ptr<Resolver>> create(event::Loop& loop, const Options& options);
    ~Resolver();
    Resolver(const Resolver&) = delete;
    Resolver& operator=(const Resolver&) = delete;

    void mx(const std::string& domain, std::function<void(MxAnswer)> done);
    // AAAA (when ipv6) and A records of `host`, following CNAMEs. status is
    // ok when either family has an address; temporary when either query
    // failed temporarily and none has an address; otherwise not_found or
    // no_data.
    void addresses(const std::string& host, bool ipv6, std::function<void(AddressAnswer)> done);
    // PTR of a numeric IPv4 or IPv6 address.
    void reverse(const std::string& address, std::function<void(NameAnswer)> done);

    size_t pending() const;

private:
    Resolver() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace facteur::dns
