// transport_maps parsing and lookup (see transport_table.hpp and
// man/transport.5). Mistakes are refused with file:line, never guessed at:
// a wrong route sends mail to the wrong place.
#include "qmgr/transport_table.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "libmail/ascii.hpp"
#include "libmail/log.hpp"
#include "libmail/system.hpp"
#include "libmail/unique_fd.hpp"

namespace facteur::qmgr {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view text) {
    while (!text.empty() && (is_blank(text.front()) || text.front() == '\r')) text.remove_prefix(1);
    while (!text.empty() && (is_blank(text.back()) || text.back() == '\r')) text.remove_suffix(1);
    return text;
}

// RFC 1035 §2.3.1 host names (with '_', which real zones contain): labels of
// letters, digits, '-' and '_', separated by single dots, at most 255 bytes.
bool valid_domain(std::string_view domain) {
    if (domain.empty() || domain.size() > 255) return false;
    if (domain.front() == '.' || domain.back() == '.') return false;
    char previous = '.';
    for (char c : domain) {
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (c == '.') {
            if (previous == '.') return false;
        } else if (!letter) {
            return false;
        }
        previous = c;
    }
    return true;
}

// RFC 5321 §4.1.3 address literals as a pattern: "[192.0.2.1]", "[IPv6:...]".
bool valid_literal(std::string_view pattern) {
    if (pattern.size() < 3 || pattern.front() != '[' || pattern.back() != ']') return false;
    for (char c : pattern.substr(1, pattern.size() - 2)) {
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' || c == ':' ||
                  c == 'v' || c == 'V' || c == 'p' || c == 'P' || c == 'i' || c == 'I';
        if (!ok) return false;
    }
    return true;
}

// RFC 3463 §2: class "." subject "." detail, class 4 or 5 here.
bool valid_status(std::string_view status) {
    if (status.size() < 5 || (status[0] != '4' && status[0] != '5') || status[1] != '.') return false;
    size_t second = status.find('.', 2);
    if (second == std::string_view::npos) return false;
    std::string_view subject = status.substr(2, second - 2), detail = status.substr(second + 1);
    auto digits = [](std::string_view part) {
        if (part.empty() || part.size() > 3) return false;
        for (char c : part)
            if (c < '0' || c > '9') return false;
        return true;
    };
    return digits(subject) && digits(detail);
}

}  // namespace

Result<Transport> parse_transport(std::string_view text) {
    text = trim(text);
    size_t colon = text.find(':');
    std::string name = ascii::lowercase(text.substr(0, colon));
    std::string_view argument = colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
    Transport transport;
    if (name == "error") {
        // "error:5.7.1 text", "error:text" (Postfix's error transport).
        transport.kind = Transport::Kind::error;
        argument = trim(argument);
        size_t space = argument.find_first_of(" \t");
        std::string_view first = argument.substr(0, space);
        if (valid_status(first)) {
            transport.status = std::string(first);
            argument = space == std::string_view::npos ? std::string_view() : trim(argument.substr(space + 1));
        } else if (!first.empty() && first.front() >= '0' && first.front() <= '9' && first.find('.') != first.npos) {
            return make_error(fmt::format("error: bad status code '{}' (want 4.x.y or 5.x.y)", log::printable(first)));
        } else {
            transport.status = "5.0.0";
        }
        transport.text = argument.empty() ? "mail for this destination is refused" : std::string(argument);
        for (char c : transport.text)
            if (static_cast<unsigned char>(c) < 0x20 && c != '\t')
                return make_error("error: control character in the text");
        return transport;
    }
    if (text.find_first_of(" \t") != std::string_view::npos)
        return make_error(fmt::format("unexpected text after the transport '{}'", log::printable(text)));
    if (name == "local") {
        transport.kind = Transport::Kind::local;
        if (colon != std::string_view::npos) {
            if (!valid_domain(argument))
                return make_error(fmt::format("local: bad domain '{}'", log::printable(argument)));
            transport.local_domain = ascii::lowercase(argument);
        }
        return transport;
    }
    if (name == "smtp" || name == "relay") {
        transport.kind = Transport::Kind::smtp;
        if (!argument.empty()) {
            auto hop = relay::parse_nexthop(argument);
            if (!hop) return make_error(hop.error());
            transport.nexthop = std::move(*hop);
        }
        return transport;
    }
    return make_error(fmt::format("unknown transport '{}' (want local, smtp, relay or error)", log::printable(name)));
}

Result<TransportTable> TransportTable::parse(std::string_view text, std::string_view source) {
    TransportTable table;
    std::map<std::string, size_t> first_line;
    size_t number = 0;
    while (!text.empty()) {
        ++number;
        size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
        auto fail = [&](std::string_view why) { return make_error(fmt::format("{}:{}: {}", source, number, why)); };
        if (line.size() > kMaxLine) return fail("line too long");
        line = trim(line);
        if (line.empty() || line.front() == '#') continue;
        size_t space = line.find_first_of(" \t");
        if (space == std::string_view::npos) return fail("expected 'pattern transport'");
        std::string pattern = ascii::lowercase(line.substr(0, space));
        auto transport = parse_transport(line.substr(space + 1));
        if (!transport) return fail(transport.error());
        if (auto [seen, inserted] = first_line.emplace(pattern, number); !inserted)
            return fail(fmt::format("'{}' is already routed on line {}", log::printable(pattern), seen->second));
        if (pattern == "*") {
            table.default_ = std::move(*transport);
        } else if (pattern.front() == '.') {
            if (!valid_domain(std::string_view(pattern).substr(1)))
                return fail(fmt::format("bad pattern '{}'", log::printable(pattern)));
            table.parents_.emplace(pattern.substr(1), std::move(*transport));
        } else if (valid_domain(pattern) || valid_literal(pattern)) {
            table.exact_.emplace(pattern, std::move(*transport));
        } else {
            return fail(fmt::format("bad pattern '{}' (want domain, .domain or *)", log::printable(pattern)));
        }
    }
    return table;
}

Result<TransportTable> TransportTable::load(const std::string& path) {
    auto text = system::read_file(path, kMaxFileSize);
    if (!text) return make_error(text.error());
    return parse(*text, path);
}

const Transport* TransportTable::find(std::string_view domain) const {
    std::string key = ascii::lowercase(domain);
    if (auto exact = exact_.find(key); exact != exact_.end()) return &exact->second;
    // "a.b.example" tries .b.example, then .example.
    std::string_view rest = key;
    for (size_t dot = rest.find('.'); dot != std::string_view::npos; dot = rest.find('.')) {
        rest.remove_prefix(dot + 1);
        if (auto parent = parents_.find(rest); parent != parents_.end()) return &parent->second;
    }
    return default_ ? &*default_ : nullptr;
}

}  // namespace facteur::qmgr
