// The pure half of the directory module: address/domain validation, alias
// target classification and the aliases(5) file parser. No I/O here.
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "libmail/directory.hpp"
#include "libmail/ascii.hpp"
#include "libmail/log.hpp"

namespace facteur::directory {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }
bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }
bool is_letter_digit(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

std::string_view trim(std::string_view text) {
    while (!text.empty() && (is_space(text.front()) || text.front() == '\r')) text.remove_prefix(1);
    while (!text.empty() && (is_space(text.back()) || text.back() == '\r')) text.remove_suffix(1);
    return text;
}

bool has_control(std::string_view text) {
    return std::any_of(text.begin(), text.end(), [](char c) { return is_control(static_cast<unsigned char>(c)); });
}

bool starts_with_ignoring_case(std::string_view text, std::string_view prefix) {
    return text.size() >= prefix.size() && lowercase(text.substr(0, prefix.size())) == prefix;
}

}  // namespace

std::string lowercase(std::string_view text) { return ascii::lowercase(text); }

Status check_domain_name(std::string_view domain) {
    if (domain.empty()) return make_error("domain name is empty");
    std::string shown = log::printable(domain, 300);
    if (domain.size() > max_domain_length)
        return make_error(fmt::format("domain {} is longer than {} characters", shown, max_domain_length));
    // RFC 1035 §2.3.1 (letters, digits, hyphens; as relaxed by RFC 1123 §2.1
    // to allow a leading digit).
    size_t start = 0;
    while (start <= domain.size()) {
        size_t dot = domain.find('.', start);
        std::string_view label = domain.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
        if (label.empty()) return make_error(fmt::format("invalid domain {}: empty label", shown));
        if (label.size() > 63) return make_error(fmt::format("invalid domain {}: label longer than 63 characters", shown));
        for (char c : label)
            if (!is_letter_digit(c) && c != '-')
                return make_error(fmt::format("invalid domain {}: only letters, digits, hyphens and dots are allowed", shown));
        if (label.front() == '-' || label.back() == '-')
            return make_error(fmt::format("invalid domain {}: a label cannot start or end with a hyphen", shown));
        if (dot == std::string_view::npos) break;
        start = dot + 1;
    }
    return {};
}

Status check_localpart(std::string_view localpart) {
    if (localpart.empty()) return make_error("local part is empty");
    std::string shown = log::printable(localpart, 100);
    if (localpart.size() > max_localpart_length)
        return make_error(fmt::format("local part {} is longer than {} characters", shown, max_localpart_length));
    for (char c : localpart) {
        if (is_control(static_cast<unsigned char>(c)) || c == ' ')
            return make_error(fmt::format("invalid local part {}: control characters and spaces are not allowed", shown));
        if (c == '@') return make_error(fmt::format("invalid local part {}: '@' is not allowed", shown));
    }
    return {};
}

Result<SplitAddress> split_address(std::string_view address) {
    size_t at = address.rfind('@');
    if (at == std::string_view::npos)
        return make_error(fmt::format("invalid address {}: expected local@domain", log::printable(address, 300)));
    std::string_view localpart = address.substr(0, at);
    std::string_view domain = address.substr(at + 1);
    if (Status s = check_localpart(localpart); !s)
        return make_error(fmt::format("invalid address {}: {}", log::printable(address, 300), s.error()));
    if (Status s = check_domain_name(domain); !s)
        return make_error(fmt::format("invalid address {}: {}", log::printable(address, 300), s.error()));
    return SplitAddress{lowercase(localpart), lowercase(domain)};
}

Result<TargetKind> classify_target(std::string_view target) {
    if (target.empty()) return make_error("alias target is empty");
    std::string shown = log::printable(target, 300);
    // A target ends up on a command line or in a path: CR, LF or NUL there
    // would let one alias smuggle a second one in.
    if (has_control(target))
        return make_error(fmt::format("invalid alias target {}: control characters are not allowed", shown));
    if (target.front() == '|') {
        if (trim(target.substr(1)).empty())
            return make_error(fmt::format("invalid alias target {}: empty command", shown));
        return TargetKind::pipe;
    }
    if (target.front() == '/') return TargetKind::file;
    if (target.find('@') == std::string_view::npos)
        return make_error(fmt::format("invalid alias target {}: expected an address, |command or /file", shown));
    auto split = split_address(target);
    if (!split) return make_error(split.error());
    return TargetKind::address;
}

namespace {

// A logical line of the aliases file: physical lines joined, with where each
// came from so errors can name the line a bad target is on.
struct LogicalLine {
    std::string text;
    std::vector<std::pair<size_t, size_t>> starts;  // (offset in text, line number)

    size_t line_at(size_t offset) const {
        size_t line = starts.front().second;
        for (const auto& [start, number] : starts)
            if (start <= offset) line = number;
        return line;
    }
};

struct Piece {
    std::string text;
    size_t offset;
};

// Splits on commas outside double quotes; a quoted piece loses its quotes and
// backslash escapes ("|/usr/bin/foo arg, more" stays one target).
Result<std::vector<Piece>> split_targets(const LogicalLine& logical, size_t value_offset) {
    std::vector<Piece> pieces;
    std::string current;
    size_t current_offset = value_offset;
    bool in_quotes = false;
    bool quoted = false;
    bool after_quote = false;  // only whitespace may follow a closing quote
    std::string_view text = logical.text;
    auto finish = [&] {
        std::string piece = quoted ? current : std::string(trim(current));
        if (!piece.empty() || quoted) pieces.push_back(Piece{std::move(piece), current_offset});
        current.clear();
        quoted = false;
        after_quote = false;
    };
    for (size_t i = value_offset; i < text.size(); ++i) {
        char c = text[i];
        if (in_quotes) {
            if (c == '\\' && i + 1 < text.size()) {
                current.push_back(text[++i]);
            } else if (c == '"') {
                in_quotes = false;
                after_quote = true;
            } else {
                current.push_back(c);
            }
            continue;
        }
        if (c == ',') {
            finish();
            current_offset = i + 1;
            continue;
        }
        if (after_quote) {
            if (is_space(c)) continue;
            return make_error(fmt::format("line {}: unexpected text after a quoted target", logical.line_at(i)));
        }
        if (c == '"') {
            if (!trim(current).empty())
                return make_error(fmt::format("line {}: a quote must start the target", logical.line_at(i)));
            current.clear();
            current_offset = i;
            in_quotes = true;
            quoted = true;
            continue;
        }
        if (current.empty() && is_space(c)) {
            current_offset = i + 1;
            continue;
        }
        current.push_back(c);
    }
    if (in_quotes) return make_error(fmt::format("line {}: unterminated quote", logical.line_at(current_offset)));
    finish();
    return pieces;
}

Status parse_logical_line(const LogicalLine& logical, std::map<std::string, std::vector<std::string>>& aliases) {
    size_t first_line = logical.starts.front().second;
    size_t colon = logical.text.find(':');
    if (colon == std::string::npos)
        return make_error(fmt::format("line {}: expected 'name: target, ...'", first_line));
    std::string_view name = trim(std::string_view(logical.text).substr(0, colon));
    if (name.empty()) return make_error(fmt::format("line {}: missing alias name before ':'", first_line));
    std::string key;
    if (name.find('@') != std::string_view::npos) {
        auto split = split_address(name);
        if (!split) return make_error(fmt::format("line {}: {}", first_line, split.error()));
        key = split->localpart + "@" + split->domain;
    } else {
        if (Status s = check_localpart(name); !s)
            return make_error(fmt::format("line {}: invalid alias name: {}", first_line, s.error()));
        key = lowercase(name);
    }

    auto pieces = split_targets(logical, colon + 1);
    if (!pieces) return make_error(pieces.error());
    if (pieces->empty()) return make_error(fmt::format("line {}: alias {} has no targets", first_line, key));

    std::vector<std::string>& targets = aliases[key];
    for (const Piece& piece : *pieces) {
        size_t line = logical.line_at(piece.offset);
        if (piece.text.empty()) return make_error(fmt::format("line {}: empty target", line));
        // Sendmail's :include: reads targets from another file at delivery
        // time; facteur keeps every target in this file or the database.
        if (starts_with_ignoring_case(piece.text, ":include:"))
            return make_error(fmt::format("line {}: :include: is not supported; list the targets here or in the "
                                          "user database",
                                          line));
        std::string target = piece.text;
        if (target.front() != '|' && target.front() != '/' && target.find('@') == std::string::npos) {
            // A bare name: that local part in the domain being expanded.
            if (Status s = check_localpart(target); !s)
                return make_error(fmt::format("line {}: invalid target: {}", line, s.error()));
            target = lowercase(target);
        } else {
            auto kind = classify_target(target);
            if (!kind) return make_error(fmt::format("line {}: {}", line, kind.error()));
            if (*kind == TargetKind::address) {
                auto split = split_address(target);
                target = split->localpart + "@" + split->domain;
            }
        }
        if (std::find(targets.begin(), targets.end(), target) == targets.end()) targets.push_back(std::move(target));
    }
    return {};
}

}  // namespace

Result<std::map<std::string, std::vector<std::string>>> parse_aliases_file(std::string_view text) {
    std::map<std::string, std::vector<std::string>> aliases;
    std::optional<LogicalLine> logical;
    size_t line_number = 0;
    size_t position = 0;
    while (position < text.size()) {
        size_t end = text.find('\n', position);
        std::string_view line = text.substr(position, end == std::string_view::npos ? std::string_view::npos : end - position);
        position = end == std::string_view::npos ? text.size() : end + 1;
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

        // aliases(5): empty lines, whitespace-only lines and lines whose first
        // non-whitespace character is '#' are ignored, even inside an entry.
        std::string_view trimmed = trim(line);
        if (trimmed.empty() || trimmed.front() == '#') continue;
        if (line.find('\0') != std::string_view::npos)
            return make_error(fmt::format("line {}: NUL byte", line_number));

        if (is_space(line.front())) {
            if (!logical) return make_error(fmt::format("line {}: continuation line without an alias before it", line_number));
            logical->text.push_back(' ');
            logical->starts.emplace_back(logical->text.size(), line_number);
            logical->text.append(trimmed);
            continue;
        }
        if (logical) {
            if (Status s = parse_logical_line(*logical, aliases); !s) return make_error(s.error());
        }
        logical = LogicalLine{};
        logical->starts.emplace_back(0, line_number);
        logical->text.assign(trimmed);
    }
    if (logical) {
        if (Status s = parse_logical_line(*logical, aliases); !s) return make_error(s.error());
    }
    return aliases;
}

}  // namespace facteur::directory
