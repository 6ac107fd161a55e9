// RFC 5322 header section helpers: field boundaries, lookup, removal, dates.
#include "libmail/message_header.hpp"

#include <time.h>

#include <algorithm>

#include <fmt/format.h>

#include "libmail/ascii.hpp"

namespace facteur::message {
namespace {

// The line starting at `position`, line ending included.
std::string_view line_at(std::string_view text, size_t position) {
    size_t end = text.find('\n', position);
    return text.substr(position, end == std::string_view::npos ? std::string_view::npos : end - position + 1);
}

bool is_blank_line(std::string_view line) { return line == "\n" || line == "\r\n"; }

// RFC 5322 §3.6.8: field-name = 1*ftext, printable US-ASCII except ':'.
size_t field_name_length(std::string_view line) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return 0;
    for (size_t i = 0; i < colon; ++i) {
        unsigned char c = static_cast<unsigned char>(line[i]);
        if (c <= 32 || c >= 127) return 0;
    }
    return colon;
}

bool is_continuation(std::string_view line) { return !line.empty() && (line[0] == ' ' || line[0] == '\t'); }

std::string_view strip_line_ending(std::string_view text) {
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    return text;
}

}  // namespace

size_t header_length(std::string_view message) {
    size_t position = 0;
    bool first = true;
    while (position < message.size()) {
        std::string_view line = line_at(message, position);
        if (is_blank_line(line)) return position + line.size();
        if (first && field_name_length(line) == 0) return 0;
        first = false;
        position += line.size();
    }
    return message.size();
}

std::vector<HeaderField> parse_header(std::string_view header) {
    std::vector<HeaderField> fields;
    size_t position = 0;
    while (position < header.size()) {
        std::string_view line = line_at(header, position);
        if (is_blank_line(line)) break;
        size_t name_length = field_name_length(line);
        if (name_length == 0) {
            position += line.size();
            continue;
        }
        size_t start = position;
        position += line.size();
        while (position < header.size()) {
            std::string_view next = line_at(header, position);
            if (!is_continuation(next)) break;
            position += next.size();
        }
        std::string_view raw = header.substr(start, position - start);
        HeaderField field;
        field.raw = raw;
        field.name = raw.substr(0, name_length);
        field.value = strip_line_ending(raw.substr(name_length + 1));
        fields.push_back(field);
    }
    return fields;
}

bool same_name(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return ascii::to_lower(x) == ascii::to_lower(y);
           });
}

size_t count_fields(std::string_view header, std::string_view name) {
    size_t count = 0;
    for (const HeaderField& field : parse_header(header))
        if (same_name(field.name, name)) ++count;
    return count;
}

bool has_field(std::string_view header, std::string_view name) { return count_fields(header, name) > 0; }

std::string field_value(std::string_view header, std::string_view name) {
    for (const HeaderField& field : parse_header(header)) {
        if (!same_name(field.name, name)) continue;
        std::string value = unfold(field.value);
        size_t begin = value.find_first_not_of(" \t");
        if (begin == std::string::npos) return {};
        size_t end = value.find_last_not_of(" \t\r\n");
        return value.substr(begin, end - begin + 1);
    }
    return {};
}

std::string remove_fields(std::string_view message, std::initializer_list<std::string_view> names) {
    size_t length = header_length(message);
    std::string_view header = message.substr(0, length);
    std::string out;
    out.reserve(message.size());
    size_t copied = 0;
    for (const HeaderField& field : parse_header(header)) {
        bool drop = std::any_of(names.begin(), names.end(), [&](std::string_view n) { return same_name(field.name, n); });
        if (!drop) continue;
        size_t start = static_cast<size_t>(field.raw.data() - message.data());
        out.append(message.substr(copied, start - copied));
        copied = start + field.raw.size();
    }
    out.append(message.substr(copied));
    return out;
}

std::string format_date(std::time_t time) {
    struct tm local {};
    localtime_r(&time, &local);
    static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    long offset = local.tm_gmtoff / 60;
    char sign = offset < 0 ? '-' : '+';
    if (offset < 0) offset = -offset;
    return fmt::format("{}, {} {} {} {:02}:{:02}:{:02} {}{:02}{:02}", kDays[local.tm_wday % 7], local.tm_mday,
                       kMonths[local.tm_mon % 12], local.tm_year + 1900, local.tm_hour, local.tm_min, local.tm_sec, sign,
                       offset / 60, offset % 60);
}

std::string unfold(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (size_t i = 0; i < value.size(); ++i) {
        char c = value[i];
        if (c == '\r' && i + 1 < value.size() && value[i + 1] == '\n' &&
            i + 2 < value.size() && (value[i + 2] == ' ' || value[i + 2] == '\t')) {
            ++i;  // drop CRLF, keep the whitespace that follows
            continue;
        }
        if (c == '\n' && i + 1 < value.size() && (value[i + 1] == ' ' || value[i + 1] == '\t')) continue;
        out.push_back(c);
    }
    return out;
}

}  // namespace facteur::message
