// Dovecot auth-client protocol parsing.
#include "authd/auth_client_protocol.hpp"

#include <charconv>

namespace facteur::authd {

std::string tab_escape(std::string_view value) {
    std::string out;
    for (char c : value) {
        switch (c) {
        case '\001': out += "\0011"; break;
        case '\t': out += "\001t"; break;
        case '\n': out += "\001n"; break;
        case '\r': out += "\001r"; break;
        default: out += c;
        }
    }
    return out;
}

std::string tab_unescape(std::string_view value) {
    std::string out;
    for (size_t i = 0; i < value.size(); ++i) {
        if (value[i] != '\001' || i + 1 == value.size()) {
            out += value[i];
            continue;
        }
        char next = value[++i];
        if (next == '1') out += '\001';
        else if (next == 't') out += '\t';
        else if (next == 'n') out += '\n';
        else if (next == 'r') out += '\r';
        else out += next;
    }
    return out;
}

std::vector<std::string_view> split_tabs(std::string_view line) {
    std::vector<std::string_view> fields;
    size_t start = 0;
    for (;;) {
        size_t tab = line.find('\t', start);
        if (tab == std::string_view::npos) {
            fields.push_back(line.substr(start));
            return fields;
        }
        fields.push_back(line.substr(start, tab - start));
        start = tab + 1;
    }
}

bool parse_id(std::string_view text, unsigned long& id) {
    if (text.empty() || text.size() > 10) return false;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), id);
    return error == std::errc() && end == text.data() + text.size();
}

std::optional<std::string> parse_auth(std::string_view line, AuthCommand& out) {
    auto fields = split_tabs(line);
    if (fields.size() < 3 || fields[0] != "AUTH") return "AUTH needs an id and a mechanism";
    if (!parse_id(fields[1], out.id)) return "AUTH id is not a number";
    if (fields[2].empty()) return "AUTH mechanism is empty";
    out.mechanism = std::string(fields[2]);
    for (size_t i = 3; i < fields.size(); ++i) {
        std::string_view field = fields[i];
        size_t equals = field.find('=');
        std::string_view name = field.substr(0, equals);
        std::string value = equals == std::string_view::npos ? "" : tab_unescape(field.substr(equals + 1));
        if (name == "service") out.service = value;
        else if (name == "lip") out.local_ip = value;
        else if (name == "rip") out.remote_ip = value;
        else if (name == "secured") out.secured = true;
        else if (name == "resp") out.initial_response = value;
        // Other parameters (lport, rport, nologin, no-penalty, session ...)
        // are accepted and not needed.
    }
    if (out.service.empty()) return "AUTH without service=";
    return std::nullopt;
}

std::optional<std::string> parse_cont(std::string_view line, unsigned long& id, std::string& data) {
    auto fields = split_tabs(line);
    if (fields.size() != 3 || fields[0] != "CONT") return "CONT needs an id and data";
    if (!parse_id(fields[1], id)) return "CONT id is not a number";
    data = std::string(fields[2]);
    return std::nullopt;
}

}  // namespace facteur::authd
