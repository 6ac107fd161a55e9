// relayd's configuration: what facteur.conf says, plus the two tables relayd
// reads (per-destination TLS policy, relay host credentials), parsed here.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/config.hpp"
#include "libmail/dns.hpp"
#include "libmail/result.hpp"
#include "relayd/smtp_client.hpp"

namespace facteur::relayd {

// "domain level" lines; ".domain" matches every subdomain; '#' comments.
// An exact entry wins over the closest ".parent" entry.
class PolicyTable {
public:
    // `origin` names the file in errors ("file:line: ...").
    static Result<PolicyTable> parse(std::string_view text, std::string_view origin);
    std::optional<TlsLevel> find(std::string_view domain) const;
    size_t size() const { return entries_.size(); }

private:
    std::map<std::string, TlsLevel> entries_;  // lowercase pattern -> level
};

// "nexthop user:password" lines (Postfix's sasl_passwd form): the nexthop as
// written in relayhost or the transport table ("[smtp.example.net]:587",
// "smtp.example.net"); the password is everything after the first ':'.
class CredentialTable {
public:
    static Result<CredentialTable> parse(std::string_view text, std::string_view origin);
    // Tries the exact nexthop text, then the bare host name.
    std::optional<Credentials> find(std::string_view nexthop_text, std::string_view host) const;
    size_t size() const { return entries_.size(); }

private:
    std::map<std::string, Credentials> entries_;
};

struct Settings {
    ClientSettings client;  // TLS contexts are filled in by main
    std::string myhostname;
    dns::Options dns;
    bool ipv6 = true;
    size_t mx_address_limit = 5;
    size_t destination_concurrency_limit = 20;
    size_t initial_destination_concurrency = 5;
    std::chrono::milliseconds connection_cache_time{2000};
    size_t connection_reuse_limit = 100;
    TlsLevel default_tls = TlsLevel::may;
    PolicyTable tls_policy;
    CredentialTable credentials;
};

// Everything from `config` except the credentials (given separately: master
// hands their file over on standard input). Fails with a clear message for
// a bad tls_security_level, an unreadable or bad tls_policy_maps, etc.
Result<Settings> load_settings(const config::Config& config, std::string_view credentials_text);

// Reads the credentials master gave on standard input (at most 1 MiB);
// empty when stdin is /dev/null or unset.
std::string read_credentials_from_stdin();

}  // namespace facteur::relayd
