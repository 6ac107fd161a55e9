// Dovecot's auth-client protocol, version 1.2 (the lines a Postfix with
// smtpd_sasl_type = dovecot speaks): pure parsing and escaping.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace facteur::authd {

// Dovecot's tab escaping: \001 -> \0011, TAB -> \001t, LF -> \001n, CR -> \001r.
std::string tab_escape(std::string_view value);
std::string tab_unescape(std::string_view value);

std::vector<std::string_view> split_tabs(std::string_view line);

struct AuthCommand {
    unsigned long id = 0;
    std::string mechanism;
    std::string service;
    std::string local_ip, remote_ip;
    bool secured = false;
    std::optional<std::string> initial_response;  // base64 as sent ("" for "resp=")
};

// Parses "AUTH\t<id>\t<mech>\tservice=...[\tparam...]"; the fields after the
// command name. Returns an error text on malformed input.
std::optional<std::string> parse_auth(std::string_view line, AuthCommand& out);
// Parses "CONT\t<id>\t<base64>".
std::optional<std::string> parse_cont(std::string_view line, unsigned long& id, std::string& data);
bool parse_id(std::string_view text, unsigned long& id);

}  // namespace facteur::authd
