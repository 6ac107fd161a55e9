// libFuzzer target for qmgr's transport table (transport(5)) and one
// transport spec, and smtpd's ETRN argument (RFC 1985 §5): arbitrary text
// never crashes them, and what they accept is routed as written.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/ascii.hpp"
#include "qmgr/transport_table.hpp"
#include "smtpd/smtp_command.hpp"

using namespace facteur;

namespace {

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size());
}

bool control(std::string_view text) {
    for (char c : text)
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t') return true;
    return false;
}

std::string_view trim(std::string_view text) {
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
    while (!text.empty() && blank(text.front())) text.remove_prefix(1);
    while (!text.empty() && blank(text.back())) text.remove_suffix(1);
    return text;
}

// What every accepted transport must hold.
void check_transport(const qmgr::Transport& transport) {
    using Kind = qmgr::Transport::Kind;
    switch (transport.kind) {
    case Kind::error:
        // RFC 3463: a 4.x.y defers, a 5.x.y bounces; the text is one line.
        if (transport.status.size() < 5 || (transport.status[0] != '4' && transport.status[0] != '5') ||
            transport.status[1] != '.')
            std::abort();
        if (transport.text.empty() || control(transport.text)) std::abort();
        break;
    case Kind::local:
        if (transport.local_domain != ascii::lowercase(transport.local_domain)) std::abort();
        if (control(transport.local_domain)) std::abort();
        break;
    case Kind::smtp:
        if (transport.nexthop) {
            // The canonical form parses back to itself.
            auto again = relay::parse_nexthop(transport.nexthop->text());
            if (!again || again->text() != transport.nexthop->text()) std::abort();
        }
        break;
    }
}

void check_etrn(std::string_view argument) {
    auto etrn = smtpd::parse_etrn_argument(argument);
    if (!etrn) {
        if (etrn.error().empty()) std::abort();
        return;
    }
    std::string_view name = etrn->name;
    if (name.empty() || name.size() > 255 || !inside(name, argument)) std::abort();
    if (name.front() == '.' || name.back() == '.' || name.find("..") != std::string_view::npos) std::abort();
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '_' || c == '.';
        if (!ok) std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);

    std::string_view first_line = input.substr(0, input.find('\n'));
    auto single = qmgr::parse_transport(first_line);
    if (single)
        check_transport(*single);
    else if (single.error().empty())
        std::abort();
    check_etrn(first_line);

    auto table = qmgr::TransportTable::parse(input, "fuzz");
    if (!table) {
        if (table.error().rfind("fuzz:", 0) != 0) std::abort();  // names source:line
        return 0;
    }

    // The table took every line, so each pattern in it must route (the
    // pattern's own domain, a subdomain of a ".parent", anything for "*").
    std::vector<std::string> probes;
    size_t lines = 0;
    for (std::string_view rest = input; !rest.empty();) {
        size_t end = rest.find('\n');
        std::string_view line = trim(rest.substr(0, end));
        rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
        if (line.empty() || line.front() == '#') continue;
        ++lines;
        std::string pattern(line.substr(0, line.find_first_of(" \t")));
        const qmgr::Transport* found = nullptr;
        if (pattern == "*") {
            found = table->find("no-such-domain.invalid");
            probes.push_back("x.y.invalid");
        } else if (pattern.front() == '.') {
            std::string sub = "a" + pattern;
            found = table->find(sub);
            probes.push_back("b.c" + pattern);
            probes.push_back(pattern.substr(1));
        } else {
            found = table->find(pattern);
            probes.push_back("www." + pattern);
            if (size_t dot = pattern.find('.'); dot != std::string::npos) probes.push_back(pattern.substr(dot + 1));
        }
        if (found == nullptr) std::abort();
        check_transport(*found);
    }
    if (table->size() != lines) std::abort();
    probes.emplace_back(input.substr(0, 64));
    for (const std::string& domain : probes)
        if (const qmgr::Transport* transport = table->find(domain)) check_transport(*transport);
    return 0;
}
