// Loading relayd's settings and parsing its two small tables.
#include "relayd/settings.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "libmail/ascii.hpp"
#include "libmail/daemon.hpp"
#include "libmail/log.hpp"
#include "libmail/system.hpp"

namespace facteur::relayd {
namespace {

constexpr size_t kMaxTable = 1 << 20;

// Splits `text` into (line number, trimmed line) without comments and blanks.
template <typename F>
Status each_line(std::string_view text, F&& f) {
    size_t number = 0;
    while (!text.empty()) {
        size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        ++number;
        if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
        while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.remove_suffix(1);
        while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
        if (line.empty()) continue;
        if (Status s = f(number, line); !s) return s;
    }
    return {};
}

// "key rest": the first word and what follows it (trimmed).
std::pair<std::string_view, std::string_view> split_first(std::string_view line) {
    size_t space = line.find_first_of(" \t");
    if (space == std::string_view::npos) return {line, {}};
    std::string_view rest = line.substr(space);
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    return {line.substr(0, space), rest};
}


}  // namespace

Result<PolicyTable> PolicyTable::parse(std::string_view text, std::string_view origin) {
    PolicyTable table;
    Status status = each_line(text, [&](size_t number, std::string_view line) -> Status {
        auto [pattern, rest] = split_first(line);
        auto [level_text, extra] = split_first(rest);
        auto level = parse_tls_level(ascii::lowercase(level_text));
        if (level_text.empty() || !level)
            return make_error(fmt::format("{}:{}: expected 'domain none|may|encrypt|verify'", origin, number));
        if (!extra.empty()) return make_error(fmt::format("{}:{}: unexpected text after the level", origin, number));
        table.entries_[ascii::lowercase(pattern)] = *level;
        return {};
    });
    if (!status) return make_error(status.error());
    return table;
}

std::optional<TlsLevel> PolicyTable::find(std::string_view domain) const {
    std::string name = ascii::lowercase(domain);
    while (!name.empty() && name.back() == '.') name.pop_back();
    if (auto it = entries_.find(name); it != entries_.end()) return it->second;
    for (size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', dot + 1)) {
        if (auto it = entries_.find(name.substr(dot)); it != entries_.end()) return it->second;
    }
    return std::nullopt;
}

Result<CredentialTable> CredentialTable::parse(std::string_view text, std::string_view origin) {
    CredentialTable table;
    Status status = each_line(text, [&](size_t number, std::string_view line) -> Status {
        auto [nexthop, secret] = split_first(line);
        size_t colon = secret.find(':');
        if (secret.empty() || colon == std::string_view::npos || colon == 0)
            return make_error(fmt::format("{}:{}: expected 'nexthop user:password'", origin, number));
        table.entries_[ascii::lowercase(nexthop)] =
            Credentials{std::string(secret.substr(0, colon)), std::string(secret.substr(colon + 1))};
        return {};
    });
    if (!status) return make_error(status.error());
    return table;
}

std::optional<Credentials> CredentialTable::find(std::string_view nexthop_text, std::string_view host) const {
    if (auto it = entries_.find(ascii::lowercase(nexthop_text)); it != entries_.end()) return it->second;
    std::string bracketed = "[" + ascii::lowercase(host) + "]";
    if (auto it = entries_.find(bracketed); it != entries_.end()) return it->second;
    if (auto it = entries_.find(ascii::lowercase(host)); it != entries_.end()) return it->second;
    return std::nullopt;
}

std::string read_credentials_from_stdin() {
    struct stat info {};
    if (fstat(STDIN_FILENO, &info) != 0 || !S_ISREG(info.st_mode)) return {};
    std::string text;
    char buffer[8192];
    off_t offset = 0;
    for (;;) {
        ssize_t n = pread(STDIN_FILENO, buffer, sizeof buffer, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        text.append(buffer, static_cast<size_t>(n));
        offset += n;
        if (text.size() > kMaxTable) {
            log::error("relayhost_credentials: larger than 1 MiB, ignored");
            return {};
        }
    }
    return text;
}

Result<Settings> load_settings(const config::Config& config, std::string_view credentials_text) {
    Settings settings;
    auto hostname = daemon::host_name(config);
    if (!hostname) return make_error(hostname.error());
    settings.myhostname = ascii::lowercase(*hostname);
    settings.client.helo_name = config.string("relayd", "helo_name");
    if (settings.client.helo_name.empty()) settings.client.helo_name = *hostname;
    settings.client.bind_address = config.string("relayd", "bind_address");
    settings.client.bind_address6 = config.string("relayd", "bind_address6");
    Timeouts& t = settings.client.timeouts;
    t.connect = config.duration("relayd", "connect_timeout");
    t.greeting = config.duration("relayd", "greeting_timeout");
    t.helo = config.duration("relayd", "helo_timeout");
    t.mail = config.duration("relayd", "mail_timeout");
    t.rcpt = config.duration("relayd", "rcpt_timeout");
    t.data = config.duration("relayd", "data_timeout");
    t.data_block = config.duration("relayd", "data_block_timeout");
    t.data_done = config.duration("relayd", "data_done_timeout");
    t.quit = config.duration("relayd", "quit_timeout");

    settings.dns.servers = config.list("", "dns_resolvers");
    settings.ipv6 = config.boolean("relayd", "ipv6");
    settings.mx_address_limit = static_cast<size_t>(config.integer("relayd", "mx_address_limit"));
    settings.destination_concurrency_limit =
        static_cast<size_t>(config.integer("relayd", "destination_concurrency_limit"));
    settings.initial_destination_concurrency = std::min(
        settings.destination_concurrency_limit,
        static_cast<size_t>(config.integer("relayd", "initial_destination_concurrency")));
    settings.connection_cache_time = config.duration("relayd", "connection_cache_time");
    settings.connection_reuse_limit = static_cast<size_t>(config.integer("relayd", "connection_reuse_limit"));

    auto level = parse_tls_level(ascii::lowercase(config.string("relayd", "tls_security_level")));
    if (!level)
        return make_error(fmt::format("[relayd] tls_security_level = {}: expected none, may, encrypt or verify",
                                      config.string("relayd", "tls_security_level")));
    settings.default_tls = *level;
    settings.client.tls = *level;

    std::string policy_path = config.path("relayd", "tls_policy_maps");
    if (!policy_path.empty()) {
        auto text = system::read_file(policy_path, kMaxTable);
        if (!text) return make_error("tls_policy_maps: " + text.error());
        auto table = PolicyTable::parse(*text, policy_path);
        if (!table) return make_error(table.error());
        settings.tls_policy = std::move(table).value();
    }
    auto credentials = CredentialTable::parse(credentials_text, config.path("relayd", "relayhost_credentials"));
    if (!credentials) return make_error(credentials.error());
    settings.credentials = std::move(credentials).value();
    return settings;
}

}  // namespace facteur::relayd
