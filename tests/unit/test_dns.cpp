// Unit tests for libmail/dns: the c-ares resolver on the event loop, against
// an in-process fake DNS server (UDP on 127.0.0.1) answering canned records.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "libmail/dns.hpp"
#include "libmail/event.hpp"
#include "tests/unit/test_support.hpp"

using namespace facteur;
using namespace std::chrono_literals;
using facteur::test::run_until_stopped;

namespace {

constexpr int type_a = 1, type_cname = 5, type_ptr = 12, type_mx = 15, type_aaaa = 28;

std::string encode_name(std::string_view name) {
    std::string out;
    while (!name.empty()) {
        size_t dot = name.find('.');
        std::string_view label = name.substr(0, dot);
        out += static_cast<char>(label.size());
        out += label;
        if (dot == std::string_view::npos) break;
        name.remove_prefix(dot + 1);
    }
    out += '\0';
    return out;
}

std::string u16(unsigned value) { return {static_cast<char>(value >> 8), static_cast<char>(value & 0xff)}; }

struct Record {
    std::string owner;  // empty: the question's name
    int type = 0;
    std::string rdata;  // wire form
};

Record mx_record(unsigned preference, std::string_view host) { return {"", type_mx, u16(preference) + encode_name(host)}; }
Record a_record(const char* address, std::string owner = "") {
    unsigned char binary[4];
    REQUIRE(inet_pton(AF_INET, address, binary) == 1);
    return {std::move(owner), type_a, std::string(reinterpret_cast<char*>(binary), 4)};
}
Record aaaa_record(const char* address) {
    unsigned char binary[16];
    REQUIRE(inet_pton(AF_INET6, address, binary) == 1);
    return {"", type_aaaa, std::string(reinterpret_cast<char*>(binary), 16)};
}
Record cname_record(std::string_view target) { return {"", type_cname, encode_name(target)}; }
Record ptr_record(std::string_view target) { return {"", type_ptr, encode_name(target)}; }

struct Reply {
    int rcode = 0;  // 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED
    std::vector<Record> answers;
    bool drop = false;  // never answer
};

// A UDP DNS server on the test's own loop. Unknown names get NXDOMAIN.
class FakeDnsServer {
public:
    explicit FakeDnsServer(event::Loop& loop) {
        fd_ = UniqueFd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        REQUIRE(fd_.valid());
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
        socklen_t length = sizeof address;
        REQUIRE(getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0);
        port_ = ntohs(address.sin_port);
        event_ = event_new(loop.base(), fd_.get(), EV_READ | EV_PERSIST, &FakeDnsServer::on_readable, this);
        REQUIRE(event_ != nullptr);
        event_add(event_, nullptr);
    }
    ~FakeDnsServer() { event_free(event_); }
    FakeDnsServer(const FakeDnsServer&) = delete;
    FakeDnsServer& operator=(const FakeDnsServer&) = delete;

    void set(const std::string& name, int type, Reply reply) { table_[{name, type}] = std::move(reply); }
    int count(const std::string& name, int type) const {
        auto it = counts_.find({name, type});
        return it == counts_.end() ? 0 : it->second;
    }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

private:
    static void on_readable(evutil_socket_t fd, short, void* self) {
        auto* server = static_cast<FakeDnsServer*>(self);
        unsigned char buffer[4096];
        sockaddr_storage peer{};
        socklen_t peer_length = sizeof peer;
        ssize_t n = recvfrom(fd, buffer, sizeof buffer, 0, reinterpret_cast<sockaddr*>(&peer), &peer_length);
        if (n < 17) return;
        std::string reply = server->answer(std::string_view(reinterpret_cast<char*>(buffer), static_cast<size_t>(n)));
        if (!reply.empty()) sendto(fd, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&peer), peer_length);
    }

    std::string answer(std::string_view query) {
        size_t offset = 12;
        std::string name;
        while (offset < query.size() && query[offset] != 0) {
            size_t length = static_cast<unsigned char>(query[offset]);
            if (offset + 1 + length > query.size()) return {};
            if (!name.empty()) name += '.';
            for (char c : query.substr(offset + 1, length)) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            offset += 1 + length;
        }
        offset += 1;
        if (offset + 4 > query.size()) return {};
        int type = (static_cast<unsigned char>(query[offset]) << 8) | static_cast<unsigned char>(query[offset + 1]);
        offset += 4;
        ++counts_[{name, type}];

        Reply canned;
        if (auto it = table_.find({name, type}); it != table_.end()) {
            canned = it->second;
        } else {
            canned.rcode = 3;
        }
        if (canned.drop) return {};
        std::string out(query.substr(0, 2));     // id
        out += u16(0x8180 | canned.rcode);       // QR, RD, RA
        out += u16(1) + u16(static_cast<unsigned>(canned.answers.size())) + u16(0) + u16(0);
        out += query.substr(12, offset - 12);    // the question as asked
        for (const Record& record : canned.answers) {
            out += encode_name(record.owner.empty() ? name : record.owner);
            out += u16(static_cast<unsigned>(record.type)) + u16(1);
            out += std::string("\0\0\x0e\x10", 4);  // TTL 3600
            out += u16(static_cast<unsigned>(record.rdata.size())) + record.rdata;
        }
        return out;
    }

    UniqueFd fd_;
    uint16_t port_ = 0;
    struct event* event_ = nullptr;
    std::map<std::pair<std::string, int>, Reply> table_;
    std::map<std::pair<std::string, int>, int> counts_;
};

std::unique_ptr<dns::Resolver> make_resolver(event::Loop& loop, const std::string& server,
                                             std::chrono::milliseconds timeout = 2000ms, int tries = 2) {
    dns::Options options;
    options.servers = {server};
    options.timeout = timeout;
    options.tries = tries;
    auto resolver = dns::Resolver::create(loop, options);
    REQUIRE(resolver.ok());
    return std::move(*resolver);
}

// Each lookup runs the loop until its answer; also checks the callback did
// not run inside the call that started it.
dns::MxAnswer lookup_mx(event::Loop& loop, dns::Resolver& resolver, const std::string& domain) {
    std::optional<dns::MxAnswer> out;
    resolver.mx(domain, [&](dns::MxAnswer answer) {
        out = std::move(answer);
        loop.stop();
    });
    REQUIRE_FALSE(out.has_value());
    REQUIRE(resolver.pending() == 1);
    REQUIRE(run_until_stopped(loop));
    REQUIRE(out.has_value());
    REQUIRE(resolver.pending() == 0);
    return *out;
}

dns::AddressAnswer lookup_addresses(event::Loop& loop, dns::Resolver& resolver, const std::string& host, bool ipv6) {
    std::optional<dns::AddressAnswer> out;
    resolver.addresses(host, ipv6, [&](dns::AddressAnswer answer) {
        out = std::move(answer);
        loop.stop();
    });
    REQUIRE_FALSE(out.has_value());
    REQUIRE(run_until_stopped(loop));
    REQUIRE(out.has_value());
    REQUIRE(resolver.pending() == 0);
    return *out;
}

dns::NameAnswer lookup_reverse(event::Loop& loop, dns::Resolver& resolver, const std::string& address) {
    std::optional<dns::NameAnswer> out;
    resolver.reverse(address, [&](dns::NameAnswer answer) {
        out = std::move(answer);
        loop.stop();
    });
    REQUIRE_FALSE(out.has_value());
    REQUIRE(run_until_stopped(loop));
    REQUIRE(out.has_value());
    return *out;
}

std::vector<std::string> hosts(const dns::MxAnswer& answer) {
    std::vector<std::string> out;
    for (const auto& record : answer.records) out.push_back(record.host);
    return out;
}

// A UDP port on 127.0.0.1 with nothing listening (ICMP port unreachable).
uint16_t closed_udp_port() {
    UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t length = sizeof address;
    REQUIRE(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0);
    return ntohs(address.sin_port);
}

void run_for(event::Loop& loop, std::chrono::milliseconds duration) {
    event::Timer stop(loop, [&] { loop.stop(); });
    stop.start(duration);
    loop.run();
}

}  // namespace

TEST_CASE("dns: status names", "[dns]") {
    CHECK(dns::status_name(dns::Status::ok) == "ok");
    CHECK(dns::status_name(dns::Status::not_found) == "not_found");
    CHECK(dns::status_name(dns::Status::no_data) == "no_data");
    CHECK(dns::status_name(dns::Status::temporary) == "temporary");
}

TEST_CASE("dns: server list and options are validated", "[dns]") {
    event::Loop loop;
    auto make = [&](std::vector<std::string> servers) {
        dns::Options options;
        options.servers = std::move(servers);
        return dns::Resolver::create(loop, options);
    };
    for (const char* good : {"192.0.2.53", "192.0.2.53:5353", "[2001:db8::53]:53", "::1", "[::1]"}) {
        INFO(good);
        CHECK(make({good}).ok());
    }
    CHECK(make({"127.0.0.1:53", "[::1]:5353"}).ok());
    for (const char* bad : {"", "not-an-ip", "dns.example.test:53", "1.2.3.4:99999", "1.2.3.4:0", "1.2.3.4:", "1.2.3.4:5x",
                            "[::1", "[::1]x", "[::1]:", "[192.0.2.1]:53", "1.2.3.4.5", "[::1]:123456"}) {
        INFO(bad);
        auto resolver = make({"127.0.0.1", bad});
        REQUIRE_FALSE(resolver.ok());
        CHECK(resolver.error().find("DNS server") != std::string::npos);
    }
    dns::Options options;
    options.timeout = 0ms;
    CHECK_FALSE(dns::Resolver::create(loop, options).ok());
    options.timeout = 1000ms;
    options.tries = 0;
    CHECK_FALSE(dns::Resolver::create(loop, options).ok());
    // Empty: the system configuration.
    CHECK(dns::Resolver::create(loop, dns::Options{}).ok());
}

TEST_CASE("dns: MX sorted by preference, names normalised", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("example.test", type_mx,
               {0, {mx_record(20, "MX2.Example.TEST"), mx_record(5, "mx0.example.test"), mx_record(10, "mx1.example.test")}});
    auto resolver = make_resolver(loop, server.address());
    auto answer = lookup_mx(loop, *resolver, "Example.Test.");
    REQUIRE(answer.status == dns::Status::ok);
    CHECK_FALSE(answer.null_mx);
    CHECK(answer.error.empty());
    CHECK(hosts(answer) == std::vector<std::string>{"mx0.example.test", "mx1.example.test", "mx2.example.test"});
    CHECK(answer.records[0].preference == 5);
    CHECK(answer.records[2].preference == 20);
}

TEST_CASE("dns: MX records of equal preference are shuffled", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("shuffle.test", type_mx,
               {0, {mx_record(10, "a.shuffle.test"), mx_record(20, "z.shuffle.test"), mx_record(10, "b.shuffle.test"),
                    mx_record(10, "c.shuffle.test"), mx_record(1, "first.shuffle.test")}});
    auto resolver = make_resolver(loop, server.address());
    std::set<std::string> firsts_of_ten;
    for (int run = 0; run < 60; ++run) {
        auto answer = lookup_mx(loop, *resolver, "shuffle.test");
        REQUIRE(answer.status == dns::Status::ok);
        REQUIRE(answer.records.size() == 5);
        CHECK(answer.records.front().host == "first.shuffle.test");
        CHECK(answer.records.back().host == "z.shuffle.test");
        std::set<std::string> middle{answer.records[1].host, answer.records[2].host, answer.records[3].host};
        CHECK(middle == std::set<std::string>{"a.shuffle.test", "b.shuffle.test", "c.shuffle.test"});
        for (size_t i = 1; i < answer.records.size(); ++i) CHECK(answer.records[i - 1].preference <= answer.records[i].preference);
        firsts_of_ten.insert(answer.records[1].host);
    }
    // 60 runs: every one of the three leads at least once (a miss has
    // probability about 3 * (2/3)^60).
    CHECK(firsts_of_ten.size() == 3);
}

TEST_CASE("dns: RFC 7505 null MX", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("nullmx.test", type_mx, {0, {mx_record(0, "")}});
    // "." among real records: the real ones stay usable.
    server.set("mixed.test", type_mx, {0, {mx_record(0, ""), mx_record(10, "mx.mixed.test")}});
    auto resolver = make_resolver(loop, server.address());
    auto answer = lookup_mx(loop, *resolver, "nullmx.test");
    CHECK(answer.status == dns::Status::ok);
    CHECK(answer.null_mx);
    CHECK(answer.records.empty());
    auto mixed = lookup_mx(loop, *resolver, "mixed.test");
    CHECK(mixed.status == dns::Status::ok);
    CHECK_FALSE(mixed.null_mx);
    CHECK(hosts(mixed) == std::vector<std::string>{"mx.mixed.test"});
}

TEST_CASE("dns: NXDOMAIN, NODATA, SERVFAIL and REFUSED", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("nodata.test", type_mx, {0, {}});
    server.set("servfail.test", type_mx, {2, {}});
    server.set("refused.test", type_mx, {5, {}});
    // A CNAME but no MX at its end: still no MX data.
    server.set("alias.test", type_mx, {0, {cname_record("target.test")}});
    auto resolver = make_resolver(loop, server.address(), 500ms, 1);

    auto missing = lookup_mx(loop, *resolver, "missing.test");
    CHECK(missing.status == dns::Status::not_found);
    CHECK(missing.records.empty());
    CHECK(missing.error.find("missing.test") != std::string::npos);
    CHECK(missing.error.find("NXDOMAIN") != std::string::npos);

    auto nodata = lookup_mx(loop, *resolver, "nodata.test");
    CHECK(nodata.status == dns::Status::no_data);
    CHECK_FALSE(nodata.error.empty());

    auto alias = lookup_mx(loop, *resolver, "alias.test");
    CHECK(alias.status == dns::Status::no_data);

    auto servfail = lookup_mx(loop, *resolver, "servfail.test");
    CHECK(servfail.status == dns::Status::temporary);
    INFO(servfail.error);
    CHECK(servfail.error.find("SERVFAIL") != std::string::npos);

    auto refused = lookup_mx(loop, *resolver, "refused.test");
    CHECK(refused.status == dns::Status::temporary);
    CHECK_FALSE(refused.error.empty());
}

TEST_CASE("dns: a server that never answers is a temporary failure after the timeout", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("silent.test", type_mx, {0, {}, true});
    auto resolver = make_resolver(loop, server.address(), 200ms, 1);
    auto start = std::chrono::steady_clock::now();
    auto answer = lookup_mx(loop, *resolver, "silent.test");
    auto elapsed = std::chrono::steady_clock::now() - start;
    CHECK(answer.status == dns::Status::temporary);
    CHECK(answer.error.find("timed out") != std::string::npos);
    CHECK(elapsed >= 150ms);
    CHECK(elapsed < 5s);
    CHECK(server.count("silent.test", type_mx) == 1);
}

TEST_CASE("dns: no server listening is a temporary failure", "[dns]") {
    event::Loop loop;
    auto resolver = make_resolver(loop, "127.0.0.1:" + std::to_string(closed_udp_port()), 300ms, 1);
    auto answer = lookup_mx(loop, *resolver, "example.test");
    CHECK(answer.status == dns::Status::temporary);
    CHECK_FALSE(answer.error.empty());
    auto addresses = lookup_addresses(loop, *resolver, "example.test", true);
    CHECK(addresses.status == dns::Status::temporary);
}

TEST_CASE("dns: addresses combine AAAA then A, each in the server's order", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("dual.test", type_aaaa, {0, {aaaa_record("2001:db8::2"), aaaa_record("2001:db8::1")}});
    server.set("dual.test", type_a, {0, {a_record("192.0.2.9"), a_record("192.0.2.1")}});
    server.set("v4only.test", type_aaaa, {0, {}});
    server.set("v4only.test", type_a, {0, {a_record("192.0.2.4")}});
    server.set("v6only.test", type_aaaa, {0, {aaaa_record("2001:db8::6")}});
    server.set("v6only.test", type_a, {0, {}});
    server.set("nothing.test", type_aaaa, {0, {}});
    server.set("nothing.test", type_a, {0, {}});
    server.set("half-broken.test", type_aaaa, {2, {}});
    server.set("half-broken.test", type_a, {0, {}});
    server.set("half-ok.test", type_aaaa, {2, {}});
    server.set("half-ok.test", type_a, {0, {a_record("192.0.2.5")}});
    auto resolver = make_resolver(loop, server.address(), 500ms, 1);

    auto dual = lookup_addresses(loop, *resolver, "dual.test", true);
    CHECK(dual.status == dns::Status::ok);
    CHECK(dual.addresses == std::vector<std::string>{"2001:db8::2", "2001:db8::1", "192.0.2.9", "192.0.2.1"});
    CHECK(dual.error.empty());

    auto v4only_server_asked = server.count("dual.test", type_aaaa);
    auto v4 = lookup_addresses(loop, *resolver, "dual.test", false);
    CHECK(v4.status == dns::Status::ok);
    CHECK(v4.addresses == std::vector<std::string>{"192.0.2.9", "192.0.2.1"});
    CHECK(server.count("dual.test", type_aaaa) == v4only_server_asked);  // AAAA not asked again

    CHECK(lookup_addresses(loop, *resolver, "v4only.test", true).addresses == std::vector<std::string>{"192.0.2.4"});
    auto v6 = lookup_addresses(loop, *resolver, "v6only.test", true);
    CHECK(v6.status == dns::Status::ok);
    CHECK(v6.addresses == std::vector<std::string>{"2001:db8::6"});
    auto v6_without_ipv6 = lookup_addresses(loop, *resolver, "v6only.test", false);
    CHECK(v6_without_ipv6.status == dns::Status::no_data);
    CHECK(v6_without_ipv6.addresses.empty());

    auto nothing = lookup_addresses(loop, *resolver, "nothing.test", true);
    CHECK(nothing.status == dns::Status::no_data);
    CHECK_FALSE(nothing.error.empty());

    auto missing = lookup_addresses(loop, *resolver, "missing.test", true);
    CHECK(missing.status == dns::Status::not_found);

    auto broken = lookup_addresses(loop, *resolver, "half-broken.test", true);
    CHECK(broken.status == dns::Status::temporary);
    CHECK(broken.error.find("AAAA") != std::string::npos);

    auto half_ok = lookup_addresses(loop, *resolver, "half-ok.test", true);
    CHECK(half_ok.status == dns::Status::ok);
    CHECK(half_ok.addresses == std::vector<std::string>{"192.0.2.5"});
}

TEST_CASE("dns: CNAME chains are followed", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("www.example.test", type_a,
               {0, {cname_record("host.example.test"), a_record("192.0.2.7", "host.example.test")}});
    server.set("www.example.test", type_aaaa, {0, {cname_record("host.example.test")}});
    auto resolver = make_resolver(loop, server.address());
    auto answer = lookup_addresses(loop, *resolver, "www.example.test", true);
    CHECK(answer.status == dns::Status::ok);
    CHECK(answer.addresses == std::vector<std::string>{"192.0.2.7"});
}

TEST_CASE("dns: PTR of IPv4 and IPv6 addresses", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("7.2.0.192.in-addr.arpa", type_ptr, {0, {ptr_record("Mail.Example.TEST")}});
    server.set("9.2.0.192.in-addr.arpa", type_ptr, {0, {ptr_record("one.example.test"), ptr_record("two.example.test")}});
    server.set("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", type_ptr,
               {0, {ptr_record("v6.example.test")}});
    server.set("8.2.0.192.in-addr.arpa", type_ptr, {2, {}});
    auto resolver = make_resolver(loop, server.address(), 500ms, 1);

    auto v4 = lookup_reverse(loop, *resolver, "192.0.2.7");
    CHECK(v4.status == dns::Status::ok);
    CHECK(v4.names == std::vector<std::string>{"mail.example.test"});

    auto two = lookup_reverse(loop, *resolver, "192.0.2.9");
    CHECK(two.status == dns::Status::ok);
    CHECK(std::set<std::string>(two.names.begin(), two.names.end()) ==
          std::set<std::string>{"one.example.test", "two.example.test"});
    CHECK(two.names.size() == 2);

    auto v6 = lookup_reverse(loop, *resolver, "2001:db8::1");
    CHECK(v6.status == dns::Status::ok);
    CHECK(v6.names == std::vector<std::string>{"v6.example.test"});

    CHECK(lookup_reverse(loop, *resolver, "192.0.2.99").status == dns::Status::not_found);
    CHECK(lookup_reverse(loop, *resolver, "192.0.2.8").status == dns::Status::temporary);

    auto bad = lookup_reverse(loop, *resolver, "not an address");
    CHECK(bad.status == dns::Status::not_found);
    CHECK(bad.error.find("numeric") != std::string::npos);
}

TEST_CASE("dns: bad names are answered on the loop, never synchronously", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    auto resolver = make_resolver(loop, server.address());
    for (const std::string& name : {std::string(), std::string("."), std::string(300, 'a'), std::string("a\0b", 3)}) {
        auto answer = lookup_mx(loop, *resolver, name);
        CHECK(answer.status == dns::Status::not_found);
        CHECK_FALSE(answer.error.empty());
        auto addresses = lookup_addresses(loop, *resolver, name, true);
        CHECK(addresses.status == dns::Status::not_found);
    }
    // A label longer than 63 octets: c-ares itself refuses it (synchronously).
    auto long_label = lookup_mx(loop, *resolver, std::string(64, 'x') + ".test");
    CHECK(long_label.status == dns::Status::not_found);
    auto long_label_addresses = lookup_addresses(loop, *resolver, std::string(64, 'x') + ".test", true);
    CHECK(long_label_addresses.status == dns::Status::not_found);
}

TEST_CASE("dns: many lookups in parallel each get their own answer", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    for (int i = 0; i < 20; ++i) {
        server.set(fmt::format("host{}.test", i), type_mx, {0, {mx_record(static_cast<unsigned>(i), fmt::format("mx{}.test", i))}});
    }
    auto resolver = make_resolver(loop, server.address());
    int answered = 0;
    for (int i = 0; i < 20; ++i) {
        resolver->mx(fmt::format("host{}.test", i), [&, i](dns::MxAnswer answer) {
            CHECK(answer.status == dns::Status::ok);
            CHECK(hosts(answer) == std::vector<std::string>{fmt::format("mx{}.test", i)});
            if (++answered == 20) loop.stop();
        });
    }
    CHECK(resolver->pending() == 20);
    REQUIRE(run_until_stopped(loop));
    CHECK(answered == 20);
    CHECK(resolver->pending() == 0);
}

TEST_CASE("dns: destroying the resolver cancels pending lookups without callbacks", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("silent.test", type_mx, {0, {}, true});
    server.set("silent.test", type_a, {0, {}, true});
    server.set("silent.test", type_aaaa, {0, {}, true});
    server.set("1.2.0.192.in-addr.arpa", type_ptr, {0, {}, true});
    server.set("fast.test", type_mx, {0, {mx_record(1, "mx.fast.test")}});
    int callbacks = 0;
    {
        auto resolver = make_resolver(loop, server.address(), 5000ms, 3);
        resolver->mx("silent.test", [&](dns::MxAnswer) { ++callbacks; });
        resolver->addresses("silent.test", true, [&](dns::AddressAnswer) { ++callbacks; });
        resolver->reverse("192.0.2.1", [&](dns::NameAnswer) { ++callbacks; });
        resolver->mx("", [&](dns::MxAnswer) { ++callbacks; });  // already answered, not yet delivered
        CHECK(resolver->pending() == 4);
        run_for(loop, 50ms);  // the queries are on the wire; the bad name was delivered
        CHECK(callbacks == 1);
        resolver->mx("fast.test", [&](dns::MxAnswer) { ++callbacks; });
        resolver->mx("", [&](dns::MxAnswer) { ++callbacks; });
    }
    run_for(loop, 100ms);
    CHECK(callbacks == 1);
}

TEST_CASE("dns: a callback may destroy the resolver; later answers are dropped", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    auto resolver = make_resolver(loop, server.address());
    int second = 0;
    bool first = false;
    resolver->mx("", [&](dns::MxAnswer) {
        first = true;
        resolver.reset();
    });
    resolver->mx("", [&](dns::MxAnswer) { ++second; });
    run_for(loop, 50ms);
    CHECK(first);
    CHECK(resolver == nullptr);
    CHECK(second == 0);
}

TEST_CASE("dns: a callback may start another lookup", "[dns]") {
    event::Loop loop;
    FakeDnsServer server(loop);
    server.set("example.test", type_mx, {0, {mx_record(10, "mx.example.test")}});
    server.set("mx.example.test", type_a, {0, {a_record("192.0.2.25")}});
    server.set("mx.example.test", type_aaaa, {0, {}});
    auto resolver = make_resolver(loop, server.address());
    std::vector<std::string> found;
    resolver->mx("example.test", [&](dns::MxAnswer answer) {
        REQUIRE(answer.status == dns::Status::ok);
        resolver->addresses(answer.records.at(0).host, true, [&](dns::AddressAnswer addresses) {
            found = addresses.addresses;
            loop.stop();
        });
    });
    REQUIRE(run_until_stopped(loop));
    CHECK(found == std::vector<std::string>{"192.0.2.25"});
}

namespace {

// A private nsd (Debian's) on 127.0.0.1, serving one test zone from a temp
// dir; stopped and reaped by the destructor.
class NsdServer {
public:
    NsdServer(const test::TempDir& dir, uint16_t port) {
        std::ofstream(dir.file("nsd.conf")) << "server:\n"
                                            << "  ip-address: 127.0.0.1@" << port << "\n"
                                            << "  username: \"\"\n  chroot: \"\"\n  database: \"\"\n"
                                            << "  zonesdir: \"" << dir.path << "\"\n"
                                            << "  pidfile: \"" << dir.file("nsd.pid") << "\"\n"
                                            << "  xfrdfile: \"" << dir.file("xfrd.state") << "\"\n"
                                            << "  zonelistfile: \"" << dir.file("zone.list") << "\"\n"
                                            << "  logfile: \"" << dir.file("nsd.log") << "\"\n"
                                            << "  server-count: 1\n  do-ip6: no\n"
                                            << "remote-control:\n  control-enable: no\n"
                                            << "zone:\n  name: example.test\n  zonefile: \"example.test.zone\"\n";
        std::ofstream(dir.file("example.test.zone")) << "$ORIGIN example.test.\n$TTL 300\n"
                                                     << "@ IN SOA ns hostmaster 1 3600 600 86400 300\n"
                                                     << "@ IN NS ns\nns IN A 127.0.0.1\n"
                                                     << "@ IN MX 10 MX1\n@ IN MX 10 mx2\n@ IN MX 20 backup\n"
                                                     << "mx1 IN A 192.0.2.1\nmx1 IN AAAA 2001:db8::1\n"
                                                     << "mx2 IN A 192.0.2.2\nbackup IN A 192.0.2.3\n"
                                                     << "nullmx IN MX 0 .\nwww IN CNAME mx1\n";
        const std::string config = dir.file("nsd.conf");
        pid_ = fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            int null = open("/dev/null", O_RDWR);
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            execl("/usr/sbin/nsd", "nsd", "-d", "-c", config.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
    }
    ~NsdServer() {
        kill(pid_, SIGTERM);
        int status = 0;
        waitpid(pid_, &status, 0);
    }
    NsdServer(const NsdServer&) = delete;
    NsdServer& operator=(const NsdServer&) = delete;

private:
    pid_t pid_ = -1;
};

// A port free for both UDP and TCP on 127.0.0.1 (nsd listens on both).
uint16_t free_port() {
    for (int attempt = 0; attempt < 20; ++attempt) {
        uint16_t port = closed_udp_port();
        UniqueFd tcp(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(port);
        if (bind(tcp.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return port;
    }
    FAIL("no free port");
    return 0;
}

}  // namespace

TEST_CASE("dns: against a real DNS server (nsd)", "[dns][nsd]") {
    if (access("/usr/sbin/nsd", X_OK) != 0) {
        WARN("/usr/sbin/nsd not installed (Debian package nsd): real-server check skipped");
        SUCCEED();
        return;
    }
    test::TempDir dir;
    uint16_t port = free_port();
    NsdServer nsd(dir, port);
    event::Loop loop;
    auto resolver = make_resolver(loop, "127.0.0.1:" + std::to_string(port), 300ms, 1);
    // nsd needs a moment to load the zone.
    bool up = false;
    for (int attempt = 0; attempt < 50 && !up; ++attempt) {
        up = lookup_addresses(loop, *resolver, "ns.example.test", false).status == dns::Status::ok;
        if (!up) run_for(loop, 100ms);
    }
    REQUIRE(up);

    auto mx = lookup_mx(loop, *resolver, "example.test");
    REQUIRE(mx.status == dns::Status::ok);
    REQUIRE(mx.records.size() == 3);
    CHECK(std::set<std::string>{mx.records[0].host, mx.records[1].host} ==
          std::set<std::string>{"mx1.example.test", "mx2.example.test"});
    CHECK(mx.records[2].host == "backup.example.test");
    CHECK(mx.records[2].preference == 20);

    auto null = lookup_mx(loop, *resolver, "nullmx.example.test");
    CHECK(null.status == dns::Status::ok);
    CHECK(null.null_mx);

    CHECK(lookup_mx(loop, *resolver, "missing.example.test").status == dns::Status::not_found);
    CHECK(lookup_mx(loop, *resolver, "mx1.example.test").status == dns::Status::no_data);

    auto mx1 = lookup_addresses(loop, *resolver, "mx1.example.test", true);
    CHECK(mx1.addresses == std::vector<std::string>{"2001:db8::1", "192.0.2.1"});
    auto www = lookup_addresses(loop, *resolver, "WWW.example.test", true);
    CHECK(www.addresses == std::vector<std::string>{"2001:db8::1", "192.0.2.1"});
    auto backup = lookup_addresses(loop, *resolver, "backup.example.test", true);
    CHECK(backup.addresses == std::vector<std::string>{"192.0.2.3"});
    // Outside nsd's zones: REFUSED.
    CHECK(lookup_mx(loop, *resolver, "elsewhere.invalid").status == dns::Status::temporary);
}
