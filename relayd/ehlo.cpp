// Parsing of the EHLO reply's extension keywords (RFC 5321 §4.1.1.1).
#include "relayd/ehlo.hpp"

#include <algorithm>

namespace facteur::relayd {
namespace {

std::string upper(std::string_view text) {
    std::string out(text);
    for (char& c : out)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return out;
}

std::vector<std::string_view> words(std::string_view text) {
    std::vector<std::string_view> out;
    size_t at = 0;
    while (at < text.size()) {
        while (at < text.size() && (text[at] == ' ' || text[at] == '\t')) ++at;
        size_t start = at;
        while (at < text.size() && text[at] != ' ' && text[at] != '\t') ++at;
        if (at > start) out.push_back(text.substr(start, at - start));
    }
    return out;
}

void add_mechanisms(Capabilities& capabilities, const std::vector<std::string_view>& list, size_t from) {
    for (size_t i = from; i < list.size(); ++i) {
        std::string mechanism = upper(list[i]);
        if (std::find(capabilities.auth.begin(), capabilities.auth.end(), mechanism) == capabilities.auth.end())
            capabilities.auth.push_back(std::move(mechanism));
    }
}

}  // namespace

bool Capabilities::has_auth(std::string_view mechanism) const {
    return std::find(auth.begin(), auth.end(), upper(mechanism)) != auth.end();
}

Capabilities parse_ehlo(const Reply& reply) {
    Capabilities capabilities;
    capabilities.esmtp = true;
    auto texts = reply.texts();
    for (size_t i = 1; i < texts.size(); ++i) {
        auto list = words(texts[i]);
        if (list.empty()) continue;
        std::string keyword = upper(list[0]);
        if (keyword == "PIPELINING") {
            capabilities.pipelining = true;
        } else if (keyword == "SIZE") {
            capabilities.size = true;
            // RFC 1870 §4: an optional decimal limit; 0 or absent = none.
            // Junk or an absurd value is taken as "no limit announced"
            // rather than refusing all mail to that host.
            if (list.size() > 1) {
                uint64_t limit = 0;
                bool valid = !list[1].empty() && list[1].size() <= 19;
                for (char c : list[1]) {
                    if (c < '0' || c > '9')
                        valid = false;
                    else if (valid)
                        limit = limit * 10 + static_cast<uint64_t>(c - '0');
                }
                if (valid) capabilities.size_limit = limit;
            }
        } else if (keyword == "8BITMIME") {
            capabilities.eightbitmime = true;
        } else if (keyword == "SMTPUTF8") {
            capabilities.smtputf8 = true;
        } else if (keyword == "DSN") {
            capabilities.dsn = true;
        } else if (keyword == "STARTTLS") {
            capabilities.starttls = true;
        } else if (keyword == "ENHANCEDSTATUSCODES") {
            capabilities.enhancedstatuscodes = true;
        } else if (keyword == "CHUNKING") {
            capabilities.chunking = true;
        } else if (keyword == "AUTH") {
            add_mechanisms(capabilities, list, 1);
        } else if (keyword.starts_with("AUTH=")) {
            // Old servers (and Postfix's broken_sasl_auth_clients) say
            // "AUTH=LOGIN PLAIN".
            std::vector<std::string_view> old = list;
            old[0] = old[0].substr(5);
            add_mechanisms(capabilities, old, old[0].empty() ? 1 : 0);
        }
    }
    return capabilities;
}

}  // namespace facteur::relayd
