// DNS on the event loop: one c-ares channel whose sockets and timeouts are
// watched by libevent, answers turned into dns::Status (see dns.hpp).
#include "libmail/dns.hpp"

#include <arpa/inet.h>
#include <ares.h>
#include <arpa/nameser.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <random>
#include <unordered_map>

#include <fmt/format.h>

#include "libmail/log.hpp"
#include "libmail/panic.hpp"

namespace facteur::dns {

std::string_view status_name(Status status) {
    switch (status) {
        case Status::ok: return "ok";
        case Status::not_found: return "not_found";
        case Status::no_data: return "no_data";
        case Status::temporary: return "temporary";
    }
    return "unknown";
}

namespace {

struct EventDeleter {
    void operator()(struct event* ev) const { event_free(ev); }
};
using UniqueEvent = std::unique_ptr<struct event, EventDeleter>;

// Owner names come back as the zone spells them; mail routing compares them
// case-insensitively (RFC 4343) and without the root label.
std::string normalize_name(std::string_view name) {
    std::string out(name);
    if (!out.empty() && out.back() == '.') out.pop_back();
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
    return out;
}

// How a c-ares status maps onto ours. EBADNAME is a permanent fault of the
// name itself, closest to "does not exist"; everything that may go away by
// asking again later is temporary.
Status classify(int ares_status) {
    switch (ares_status) {
        case ARES_SUCCESS: return Status::ok;
        case ARES_ENOTFOUND:
        case ARES_EBADNAME: return Status::not_found;
        case ARES_ENODATA: return Status::no_data;
        default: return Status::temporary;
    }
}

std::string describe(int ares_status) {
    switch (ares_status) {
        case ARES_ENOTFOUND: return "domain not found (NXDOMAIN)";
        case ARES_ENODATA: return "no record of that type";
        case ARES_ESERVFAIL: return "server failure (SERVFAIL)";
        case ARES_EREFUSED: return "query refused (REFUSED)";
        case ARES_ETIMEOUT: return "timed out";
        // c-ares 1.18 moves on to the next server after SERVFAIL or REFUSED
        // (worth it with several servers) and, when none is left, reports
        // all three the same way.
        case ARES_ECONNREFUSED: return "no DNS server answered (SERVFAIL, REFUSED or connection refused)";
        case ARES_EBADNAME: return "invalid domain name";
        case ARES_EBADRESP: return "malformed answer";
        case ARES_EFORMERR: return "server reported a format error (FORMERR)";
        case ARES_ENOTIMP: return "server does not implement the query (NOTIMP)";
        default: return ares_strerror(ares_status);
    }
}

// Parses one entry of Options::servers: "a.b.c.d", "a.b.c.d:port", "::1",
// "[v6]" or "[v6]:port". Only numeric addresses: the resolver must not need
// a resolver.
Result<ares_addr_port_node> parse_server(std::string_view text) {
    ares_addr_port_node node{};
    std::string host;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        size_t close = text.find(']');
        if (close == std::string_view::npos) return make_error(fmt::format("DNS server \"{}\": missing ']'", log::printable(text)));
        host = std::string(text.substr(1, close - 1));
        std::string_view rest = text.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return make_error(fmt::format("DNS server \"{}\": expected ':port' after ']'", log::printable(text)));
            port_text = rest.substr(1);
            if (port_text.empty()) return make_error(fmt::format("DNS server \"{}\": empty port", log::printable(text)));
        }
    } else if (std::count(text.begin(), text.end(), ':') == 1) {
        size_t colon = text.find(':');
        host = std::string(text.substr(0, colon));
        port_text = text.substr(colon + 1);
        if (port_text.empty()) return make_error(fmt::format("DNS server \"{}\": empty port", log::printable(text)));
    } else {
        host = std::string(text);  // IPv4 without port, or bare IPv6
    }
    int port = 53;
    if (!port_text.empty()) {
        if (port_text.size() > 5 || !std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            return make_error(fmt::format("DNS server \"{}\": bad port", log::printable(text)));
        }
        port = std::stoi(std::string(port_text));
        if (port < 1 || port > 65535) return make_error(fmt::format("DNS server \"{}\": port out of range", log::printable(text)));
    }
    if (inet_pton(AF_INET, host.c_str(), &node.addr.addr4) == 1 && text.front() != '[') {
        node.family = AF_INET;
    } else if (inet_pton(AF_INET6, host.c_str(), &node.addr.addr6) == 1) {
        node.family = AF_INET6;
    } else {
        return make_error(fmt::format("DNS server \"{}\": not a numeric IP address", log::printable(text)));
    }
    node.udp_port = port;
    node.tcp_port = port;
    return node;
}

// RFC 1035 §3.5 / RFC 3596 §2.5: the PTR owner name of an address.
Result<std::string> reverse_name(const std::string& address, unsigned char* binary, int& family, int& length) {
    if (inet_pton(AF_INET, address.c_str(), binary) == 1) {
        family = AF_INET;
        length = 4;
        return fmt::format("{}.{}.{}.{}.in-addr.arpa", binary[3], binary[2], binary[1], binary[0]);
    }
    if (inet_pton(AF_INET6, address.c_str(), binary) == 1) {
        family = AF_INET6;
        length = 16;
        static constexpr char digits[] = "0123456789abcdef";
        std::string name;
        name.reserve(72);
        for (int i = 15; i >= 0; --i) {
            name += digits[binary[i] & 0x0f];
            name += '.';
            name += digits[binary[i] >> 4];
            name += '.';
        }
        name += "ip6.arpa";
        return name;
    }
    return make_error(fmt::format("not a numeric IP address: \"{}\"", log::printable(address)));
}

}  // namespace

struct Resolver::Impl {
    enum class Kind { mx, a, aaaa, ptr };
    struct Lookup;
    // The `arg` of one ares_query: stable while its Lookup lives, and the
    // Lookup lives until every one of its queries has called back.
    struct Query {
        Impl* impl = nullptr;
        Lookup* lookup = nullptr;
        Kind kind = Kind::a;
    };
    struct FamilyResult {
        Status status = Status::temporary;
        std::vector<std::string> addresses;
        std::string error;
        bool asked = false;
    };
    struct Lookup {
        uint64_t id = 0;
        std::string name;  // as asked, for error texts
        std::function<void(MxAnswer)> mx_done;
        std::function<void(AddressAnswer)> address_done;
        std::function<void(NameAnswer)> name_done;
        Query queries[2];
        int outstanding = 0;
        FamilyResult v6, v4;
        unsigned char address[16] = {};
        int address_family = 0;
        int address_length = 0;
    };

    event::Loop& loop;
    ares_channel channel = nullptr;
    bool library_initialised = false;
    UniqueEvent timer;
    UniqueEvent deliver_event;
    std::unordered_map<int, UniqueEvent> sockets;
    std::map<uint64_t, std::unique_ptr<Lookup>> lookups;
    // Finished lookups whose user callback has not run yet: they run from
    // deliver_event, so never inside mx()/addresses() nor inside c-ares.
    std::deque<std::function<void()>> ready;
    uint64_t next_id = 1;
    std::mt19937 random{std::random_device{}()};
    std::shared_ptr<bool> alive = std::make_shared<bool>(true);

    explicit Impl(event::Loop& l) : loop(l) {}

    ~Impl() {
        *alive = false;
        // Runs every pending query's callback with ARES_EDESTRUCTION (which
        // on_answer ignores) and reports each socket closed to on_socket_state.
        if (channel != nullptr) ares_destroy(channel);
        sockets.clear();
        if (library_initialised) ares_library_cleanup();
    }

    // c-ares opened, changed or closed a socket: keep one persistent event
    // per socket with the interest c-ares asked for.
    static void on_socket_state(void* data, ares_socket_t fd, int readable, int writable) {
        auto* self = static_cast<Impl*>(data);
        self->sockets.erase(fd);  // an event freed from its own callback is fine in libevent
        if (!readable && !writable) return;
        short what = EV_PERSIST;
        if (readable) what |= EV_READ;
        if (writable) what |= EV_WRITE;
        UniqueEvent ev(event_new(self->loop.base(), fd, what, &Impl::on_socket_event, self));
        if (!ev || event_add(ev.get(), nullptr) != 0) panic("dns: cannot watch a c-ares socket");
        self->sockets.emplace(fd, std::move(ev));
    }

    static void on_socket_event(evutil_socket_t fd, short what, void* data) {
        auto* self = static_cast<Impl*>(data);
        ares_process_fd(self->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD, (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
        self->arm_timer();
    }

    static void on_timeout(evutil_socket_t, short, void* data) {
        auto* self = static_cast<Impl*>(data);
        ares_process_fd(self->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
        self->arm_timer();
    }

    void arm_timer() {
        timeval buffer{};
        timeval* next = ares_timeout(channel, nullptr, &buffer);
        if (next == nullptr) {
            event_del(timer.get());
        } else {
            event_add(timer.get(), next);
        }
    }

    static void on_deliver(evutil_socket_t, short, void* data) {
        auto* self = static_cast<Impl*>(data);
        std::shared_ptr<bool> alive = self->alive;
        while (*alive && !self->ready.empty()) {
            std::function<void()> callback = std::move(self->ready.front());
            self->ready.pop_front();
            // No exception may cross libevent (CONVENTIONS).
            try {
                callback();
            } catch (const std::exception& error) {
                log::error("dns: unexpected exception in a lookup callback: {}", error.what());
            } catch (...) {
                log::error("dns: unexpected exception in a lookup callback");
            }
            // The callback may have destroyed the Resolver: `self` is gone then.
        }
    }

    void schedule(std::function<void()> callback) {
        ready.push_back(std::move(callback));
        event_active(deliver_event.get(), EV_TIMEOUT, 0);
    }

    Lookup& new_lookup(const std::string& name) {
        auto lookup = std::make_unique<Lookup>();
        lookup->id = next_id++;
        lookup->name = name;
        Lookup& ref = *lookup;
        lookups.emplace(ref.id, std::move(lookup));
        return ref;
    }

    void start_query(Lookup& lookup, int slot, Kind kind, const std::string& name, int type) {
        Query& query = lookup.queries[slot];
        query.impl = this;
        query.lookup = &lookup;
        query.kind = kind;
        ++lookup.outstanding;
        // May call on_answer synchronously (bad name, no memory); the
        // answer is then only queued, never delivered from here.
        ares_query(channel, name.c_str(), ns_c_in, type, &Impl::on_answer, &query);
    }

    static void on_answer(void* arg, int status, int /*timeouts*/, unsigned char* answer, int length) {
        // Resolver being destroyed: nothing of it may be touched but memory
        // it still owns; the user callback must not run.
        if (status == ARES_EDESTRUCTION) return;
        auto* query = static_cast<Query*>(arg);
        Impl* self = query->impl;
        Lookup& lookup = *query->lookup;
        switch (query->kind) {
            case Kind::mx: self->finish_mx(lookup, status, answer, length); break;
            case Kind::ptr: self->finish_ptr(lookup, status, answer, length); break;
            case Kind::a: self->record_addresses(lookup, lookup.v4, false, status, answer, length); break;
            case Kind::aaaa: self->record_addresses(lookup, lookup.v6, true, status, answer, length); break;
        }
        if (--lookup.outstanding == 0) {
            if (query->kind == Kind::a || query->kind == Kind::aaaa) self->finish_addresses(lookup);
            self->lookups.erase(lookup.id);
        }
    }

    std::string error_text(std::string_view type, const std::string& name, int status) const {
        return fmt::format("{} lookup of {}: {}", type, log::printable(name), describe(status));
    }

    void finish_mx(Lookup& lookup, int status, unsigned char* answer, int length) {
        MxAnswer result;
        if (status == ARES_SUCCESS) {
            ares_mx_reply* replies = nullptr;
            status = ares_parse_mx_reply(answer, length, &replies);
            if (status == ARES_SUCCESS) {
                size_t total = 0;
                for (ares_mx_reply* reply = replies; reply != nullptr; reply = reply->next) {
                    ++total;
                    std::string host = normalize_name(reply->host != nullptr ? reply->host : "");
                    // RFC 7505 §3: "." names no host. A domain publishing it
                    // with other MX records is broken; those others are
                    // still usable, the "." never is.
                    if (host.empty()) continue;
                    result.records.push_back(MxRecord{reply->priority, std::move(host)});
                }
                ares_free_data(replies);
                if (total > 0 && result.records.empty()) {
                    result.null_mx = true;
                } else if (result.records.empty()) {
                    status = ARES_ENODATA;
                }
                // RFC 5321 §5.1: equal preferences are tried in random order.
                std::shuffle(result.records.begin(), result.records.end(), random);
                std::stable_sort(result.records.begin(), result.records.end(),
                                 [](const MxRecord& x, const MxRecord& y) { return x.preference < y.preference; });
            }
        }
        result.status = classify(status);
        if (result.status != Status::ok) {
            result.records.clear();
            result.error = error_text("MX", lookup.name, status);
        }
        schedule([done = std::move(lookup.mx_done), result = std::move(result)]() mutable { done(std::move(result)); });
    }

    void record_addresses(Lookup& lookup, FamilyResult& family, bool ipv6, int status, unsigned char* answer, int length) {
        if (status == ARES_SUCCESS) {
            hostent* host = nullptr;
            status = ipv6 ? ares_parse_aaaa_reply(answer, length, &host, nullptr, nullptr)
                          : ares_parse_a_reply(answer, length, &host, nullptr, nullptr);
            if (status == ARES_SUCCESS && host != nullptr) {
                for (char** entry = host->h_addr_list; entry != nullptr && *entry != nullptr; ++entry) {
                    char text[INET6_ADDRSTRLEN] = {};
                    if (inet_ntop(ipv6 ? AF_INET6 : AF_INET, *entry, text, sizeof text) != nullptr) {
                        family.addresses.emplace_back(text);
                    }
                }
            }
            if (host != nullptr) ares_free_hostent(host);
            if (status == ARES_SUCCESS && family.addresses.empty()) status = ARES_ENODATA;
        }
        family.status = classify(status);
        if (family.status != Status::ok) family.error = error_text(ipv6 ? "AAAA" : "A", lookup.name, status);
    }

    // Combines the two families as dns.hpp documents: any address wins, then
    // a temporary failure (the missing family may exist), then the answers.
    void finish_addresses(Lookup& lookup) {
        AddressAnswer result;
        std::vector<const FamilyResult*> families;
        if (lookup.v6.asked) families.push_back(&lookup.v6);
        families.push_back(&lookup.v4);
        for (const FamilyResult* family : families) {
            result.addresses.insert(result.addresses.end(), family->addresses.begin(), family->addresses.end());
        }
        auto any = [&](Status status) {
            return std::any_of(families.begin(), families.end(), [&](const FamilyResult* f) { return f->status == status; });
        };
        if (!result.addresses.empty()) {
            result.status = Status::ok;
        } else if (any(Status::temporary)) {
            result.status = Status::temporary;
        } else if (any(Status::not_found)) {
            result.status = Status::not_found;
        } else {
            result.status = Status::no_data;
        }
        if (result.status != Status::ok) {
            for (const FamilyResult* family : families) {
                if (family->error.empty()) continue;
                if (!result.error.empty()) result.error += "; ";
                result.error += family->error;
            }
        }
        schedule([done = std::move(lookup.address_done), result = std::move(result)]() mutable { done(std::move(result)); });
    }

    void finish_ptr(Lookup& lookup, int status, unsigned char* answer, int length) {
        NameAnswer result;
        if (status == ARES_SUCCESS) {
            hostent* host = nullptr;
            status = ares_parse_ptr_reply(answer, length, lookup.address, lookup.address_length, lookup.address_family, &host);
            if (status == ARES_SUCCESS && host != nullptr) {
                auto add = [&](const char* name) {
                    std::string normal = normalize_name(name);
                    if (!normal.empty() && std::find(result.names.begin(), result.names.end(), normal) == result.names.end()) {
                        result.names.push_back(std::move(normal));
                    }
                };
                // c-ares puts one PTR target in h_name and every target in
                // h_aliases (in answer order); keep answer order.
                for (char** alias = host->h_aliases; alias != nullptr && *alias != nullptr; ++alias) add(*alias);
                if (host->h_name != nullptr) add(host->h_name);
            }
            if (host != nullptr) ares_free_hostent(host);
            if (status == ARES_SUCCESS && result.names.empty()) status = ARES_ENODATA;
        }
        result.status = classify(status);
        if (result.status != Status::ok) {
            result.names.clear();
            result.error = error_text("PTR", lookup.name, status);
        }
        schedule([done = std::move(lookup.name_done), result = std::move(result)]() mutable { done(std::move(result)); });
    }

    // A name c-ares would turn into a root or malformed query: answered
    // here, still through the loop.
    static bool usable_name(const std::string& name) {
        return !name.empty() && name != "." && name.size() <= 254 && name.find('\0') == std::string::npos;
    }
};

Result<std::unique_ptr<Resolver>> Resolver::create(event::Loop& loop, const Options& options) {
    if (options.timeout.count() <= 0) return make_error("DNS timeout must be positive");
    if (options.timeout.count() > 600000) return make_error("DNS timeout must be at most 600 s");
    if (options.tries < 1 || options.tries > 20) return make_error("DNS tries must be between 1 and 20");
    std::vector<ares_addr_port_node> servers;
    for (const std::string& text : options.servers) {
        auto node = parse_server(text);
        if (!node) return make_error(node.error());
        servers.push_back(*node);
    }

    std::unique_ptr<Resolver> resolver(new Resolver());
    resolver->impl_ = std::make_unique<Impl>(loop);
    Impl& impl = *resolver->impl_;
    if (int status = ares_library_init(ARES_LIB_INIT_ALL); status != ARES_SUCCESS) {
        return make_error(fmt::format("c-ares initialisation failed: {}", ares_strerror(status)));
    }
    impl.library_initialised = true;

    impl.timer.reset(event_new(loop.base(), -1, 0, &Impl::on_timeout, &impl));
    impl.deliver_event.reset(event_new(loop.base(), -1, 0, &Impl::on_deliver, &impl));
    if (!impl.timer || !impl.deliver_event) panic("dns: event_new failed");

    ares_options ares{};
    ares.sock_state_cb = &Impl::on_socket_state;
    ares.sock_state_cb_data = &impl;
    ares.timeout = static_cast<int>(options.timeout.count());
    ares.tries = options.tries;
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    if (int status = ares_init_options(&impl.channel, &ares, mask); status != ARES_SUCCESS) {
        impl.channel = nullptr;
        return make_error(fmt::format("c-ares channel initialisation failed: {}", ares_strerror(status)));
    }
    if (!servers.empty()) {
        for (size_t i = 0; i + 1 < servers.size(); ++i) servers[i].next = &servers[i + 1];
        if (int status = ares_set_servers_ports(impl.channel, servers.data()); status != ARES_SUCCESS) {
            return make_error(fmt::format("cannot set DNS servers: {}", ares_strerror(status)));
        }
    }
    return resolver;
}

Resolver::~Resolver() = default;

void Resolver::mx(const std::string& domain, std::function<void(MxAnswer)> done) {
    Impl::Lookup& lookup = impl_->new_lookup(domain);
    lookup.mx_done = std::move(done);
    if (!Impl::usable_name(domain)) {
        impl_->finish_mx(lookup, ARES_EBADNAME, nullptr, 0);
        impl_->lookups.erase(lookup.id);
        return;
    }
    impl_->start_query(lookup, 0, Impl::Kind::mx, domain, ns_t_mx);
    impl_->arm_timer();
}

void Resolver::addresses(const std::string& host, bool ipv6, std::function<void(AddressAnswer)> done) {
    Impl::Lookup& lookup = impl_->new_lookup(host);
    lookup.address_done = std::move(done);
    lookup.v6.asked = ipv6;
    if (!Impl::usable_name(host)) {
        impl_->record_addresses(lookup, lookup.v4, false, ARES_EBADNAME, nullptr, 0);
        if (ipv6) impl_->record_addresses(lookup, lookup.v6, true, ARES_EBADNAME, nullptr, 0);
        impl_->finish_addresses(lookup);
        impl_->lookups.erase(lookup.id);
        return;
    }
    // Both queries are started before either can complete: a synchronous
    // answer to the first must not finish the lookup early.
    uint64_t id = lookup.id;
    lookup.outstanding = 1;
    if (ipv6) impl_->start_query(lookup, 0, Impl::Kind::aaaa, host, ns_t_aaaa);
    impl_->start_query(lookup, 1, Impl::Kind::a, host, ns_t_a);
    // Drop the guard; if both already answered synchronously, finish now.
    auto it = impl_->lookups.find(id);
    if (it != impl_->lookups.end() && --it->second->outstanding == 0) {
        impl_->finish_addresses(*it->second);
        impl_->lookups.erase(it);
    }
    impl_->arm_timer();
}

void Resolver::reverse(const std::string& address, std::function<void(NameAnswer)> done) {
    Impl::Lookup& lookup = impl_->new_lookup(address);
    lookup.name_done = std::move(done);
    auto name = reverse_name(address, lookup.address, lookup.address_family, lookup.address_length);
    if (!name) {
        NameAnswer result;
        result.status = Status::not_found;
        result.error = fmt::format("PTR lookup: {}", name.error());
        impl_->schedule([done = std::move(lookup.name_done), result = std::move(result)]() mutable { done(std::move(result)); });
        impl_->lookups.erase(lookup.id);
        return;
    }
    lookup.name = *name;
    impl_->start_query(lookup, 0, Impl::Kind::ptr, *name, ns_t_ptr);
    impl_->arm_timer();
}

size_t Resolver::pending() const { return impl_->lookups.size() + impl_->ready.size(); }

}  // namespace facteur::dns
