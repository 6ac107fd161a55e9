// facteur.conf parsing, validation, $name expansion and typed getters.
#include "libmail/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "libmail/ascii.hpp"
#include "libmail/system.hpp"
#include "libmail/panic.hpp"

namespace facteur::config {
namespace {

constexpr int kMaxExpansionDepth = 16;
constexpr size_t kMaxFileSize = 4 << 20;

std::string_view trim(std::string_view text) {
    size_t begin = text.find_first_not_of(" \t\r\n");
    if (begin == std::string_view::npos) return {};
    size_t end = text.find_last_not_of(" \t\r\n");
    return text.substr(begin, end - begin + 1);
}

bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}


// A decimal number and what follows it ("50M" -> 50, "M").
Result<std::pair<uint64_t, std::string_view>> split_number(std::string_view text) {
    text = trim(text);
    uint64_t number = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
    if (error == std::errc::result_out_of_range) return make_error(fmt::format("'{}' is too large", text));
    if (error != std::errc() || end == text.data()) return make_error(fmt::format("'{}' is not a number", text));
    return std::pair{number, trim(std::string_view(end, static_cast<size_t>(text.data() + text.size() - end)))};
}

Result<uint64_t> multiply(uint64_t number, uint64_t unit, std::string_view text) {
    if (unit != 0 && number > UINT64_MAX / unit) return make_error(fmt::format("'{}' is too large", text));
    return number * unit;
}

}  // namespace

const Parameter* find_parameter(std::string_view section, std::string_view name) {
    for (const Parameter& parameter : parameters())
        if (parameter.section == section && parameter.name == name) return &parameter;
    return nullptr;
}

std::vector<std::string_view> sections() {
    std::vector<std::string_view> out{""};
    for (const Parameter& parameter : parameters())
        if (std::find(out.begin(), out.end(), parameter.section) == out.end()) out.push_back(parameter.section);
    return out;
}

std::string_view type_name(Type type) {
    switch (type) {
    case Type::string: return "string";
    case Type::path: return "path";
    case Type::integer: return "integer";
    case Type::boolean: return "boolean";
    case Type::size: return "size";
    case Type::duration: return "duration";
    case Type::mode: return "mode";
    case Type::list: return "list";
    }
    return "string";
}

Result<bool> parse_boolean(std::string_view text) {
    std::string value = ascii::lowercase(trim(text));
    if (value == "yes" || value == "true" || value == "on" || value == "1") return true;
    if (value == "no" || value == "false" || value == "off" || value == "0") return false;
    return make_error(fmt::format("'{}' is not a boolean (use yes or no)", text));
}

Result<uint64_t> parse_size(std::string_view text) {
    auto split = split_number(text);
    if (!split) return make_error(split.error());
    auto [number, suffix] = *split;
    std::string unit = ascii::lowercase(suffix);
    if (unit.empty() || unit == "b") return number;
    if (unit == "k" || unit == "kb" || unit == "kib") return multiply(number, 1ull << 10, text);
    if (unit == "m" || unit == "mb" || unit == "mib") return multiply(number, 1ull << 20, text);
    if (unit == "g" || unit == "gb" || unit == "gib") return multiply(number, 1ull << 30, text);
    return make_error(fmt::format("'{}' has an unknown size unit (use K, M or G)", text));
}

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
    auto split = split_number(text);
    if (!split) return make_error(split.error());
    auto [number, suffix] = *split;
    std::string unit = ascii::lowercase(suffix);
    uint64_t scale = 0;
    if (unit == "ms") scale = 1;
    else if (unit.empty() || unit == "s") scale = 1000;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else if (unit == "d") scale = 86'400'000;
    else if (unit == "w") scale = 604'800'000;
    else return make_error(fmt::format("'{}' has an unknown time unit (use ms, s, m, h, d or w)", text));
    auto total = multiply(number, scale, text);
    if (!total) return make_error(total.error());
    if (*total > static_cast<uint64_t>(INT64_MAX)) return make_error(fmt::format("'{}' is too large", text));
    return std::chrono::milliseconds(static_cast<int64_t>(*total));
}

Result<uint32_t> parse_mode(std::string_view text) {
    text = trim(text);
    if (text.empty() || text.size() > 4) return make_error(fmt::format("'{}' is not an octal file mode", text));
    uint32_t mode = 0;
    for (char c : text) {
        if (c < '0' || c > '7') return make_error(fmt::format("'{}' is not an octal file mode", text));
        mode = mode * 8 + static_cast<uint32_t>(c - '0');
    }
    return mode;
}

std::vector<std::string> split_list(std::string_view text) {
    std::vector<std::string> out;
    std::string current;
    for (char c : text) {
        if (c == ',' || c == ' ' || c == '\t') {
            if (!current.empty()) out.push_back(std::move(current));
            current.clear();
        } else {
            current += c;
        }
    }
    if (!current.empty()) out.push_back(std::move(current));
    return out;
}

Config::Config() = default;

Result<Config> Config::load(const std::string& path) {
    auto text = system::read_file(path, kMaxFileSize);
    if (!text) return make_error(text.error());
    return parse(*text, path);
}

Result<Config> Config::parse(std::string_view text, std::string_view file_name) {
    Config config;
    config.file_ = std::string(file_name);
    std::string section;
    const Parameter* last = nullptr;
    std::string last_section;
    int line_number = 0;
    auto error_at = [&](int line, std::string message) {
        return make_error(fmt::format("{}:{}: {}", file_name, line, message));
    };

    size_t position = 0;
    while (position < text.size()) {
        size_t end = text.find('\n', position);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(position, end - position);
        position = end + 1;
        ++line_number;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.find('\0') != std::string_view::npos) return error_at(line_number, "NUL byte in line");
        std::string_view content = trim(line);
        if (content.empty() || content.front() == '#') continue;

        // Postfix-style continuation: a line starting with white space
        // continues the previous parameter's value.
        if (line.front() == ' ' || line.front() == '\t') {
            if (last == nullptr) return error_at(line_number, "continuation line without a parameter before it");
            Setting& setting = config.settings_[{last_section, std::string(last->name)}];
            if (!setting.value.empty()) setting.value += ' ';
            setting.value += content;
            continue;
        }
        if (content.front() == '[') {
            if (content.back() != ']') return error_at(line_number, fmt::format("malformed section header '{}'", content));
            std::string name(trim(content.substr(1, content.size() - 2)));
            auto known = sections();
            if (name.empty() || std::find(known.begin(), known.end(), name) == known.end())
                return error_at(line_number, fmt::format("unknown section [{}]", name));
            section = name;
            last = nullptr;
            continue;
        }
        size_t equals = content.find('=');
        if (equals == std::string_view::npos)
            return error_at(line_number, fmt::format("expected 'name = value', got '{}'", content));
        std::string_view name = trim(content.substr(0, equals));
        std::string_view value = trim(content.substr(equals + 1));
        if (name.empty() || !std::all_of(name.begin(), name.end(), is_name_char))
            return error_at(line_number, fmt::format("malformed parameter name '{}'", name));
        const Parameter* parameter = find_parameter(section, name);
        if (parameter == nullptr) {
            if (section.empty()) return error_at(line_number, fmt::format("unknown parameter '{}'", name));
            return error_at(line_number, fmt::format("unknown parameter '{}' in section [{}]", name, section));
        }
        config.settings_[{section, std::string(name)}] = Setting{std::string(value), line_number};
        last = parameter;
        last_section = section;
    }

    // Validate every value the file sets, with its $name references expanded.
    for (const auto& [key, setting] : config.settings_) {
        const Parameter* parameter = find_parameter(key.first, key.second);
        Status valid = config.validate(key.first, *parameter);
        if (!valid) return error_at(setting.line, fmt::format("{}: {}", key.second, valid.error()));
    }
    // Defaults can refer to values the file set ($data_dir ...): check them too.
    for (const Parameter& parameter : parameters()) {
        Status valid = config.validate(parameter.section, parameter);
        if (!valid)
            return make_error(fmt::format("{}: default of {}: {}", file_name, parameter.name, valid.error()));
    }
    return config;
}

Status Config::set(std::string_view section, std::string_view name, std::string_view value) {
    const Parameter* parameter = find_parameter(section, name);
    if (parameter == nullptr) return make_error(fmt::format("unknown parameter '{}'", name));
    Key key{std::string(section), std::string(name)};
    auto previous = settings_.find(key);
    std::optional<Setting> saved;
    if (previous != settings_.end()) saved = previous->second;
    settings_[key] = Setting{std::string(value), 0};
    Status valid = validate(section, *parameter);
    if (!valid) {
        if (saved) settings_[key] = *saved;
        else settings_.erase(key);
        return make_error(fmt::format("{}: {}", name, valid.error()));
    }
    return {};
}

std::string Config::raw(std::string_view section, std::string_view name) const {
    auto found = settings_.find(Key{std::string(section), std::string(name)});
    if (found != settings_.end()) return found->second.value;
    const Parameter* parameter = find_parameter(section, name);
    if (parameter == nullptr) panic(fmt::format("config: undeclared parameter [{}] {}", section, name));
    return std::string(parameter->default_value);
}

bool Config::is_set(std::string_view section, std::string_view name) const {
    return settings_.find(Key{std::string(section), std::string(name)}) != settings_.end();
}

// RFC-free but Postfix-like: $name and ${name} refer to a parameter of the
// same section, else of the global section; $$ is a literal dollar.
Result<std::string> Config::expand(std::string_view section, std::string_view text, int depth) const {
    if (depth > kMaxExpansionDepth) return make_error("$name references nest too deeply (a loop?)");
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '$') {
            out += text[i];
            continue;
        }
        if (i + 1 < text.size() && text[i + 1] == '$') {
            out += '$';
            ++i;
            continue;
        }
        std::string_view name;
        if (i + 1 < text.size() && text[i + 1] == '{') {
            size_t close = text.find('}', i + 2);
            if (close == std::string_view::npos) return make_error("unterminated ${");
            name = text.substr(i + 2, close - i - 2);
            i = close;
        } else {
            size_t end = i + 1;
            while (end < text.size() && is_name_char(text[end])) ++end;
            name = text.substr(i + 1, end - i - 1);
            i = end - 1;
        }
        if (name.empty()) return make_error("'$' without a parameter name (write $$ for a dollar sign)");
        std::string_view owner = section;
        if (find_parameter(owner, name) == nullptr) owner = "";
        if (find_parameter(owner, name) == nullptr) return make_error(fmt::format("unknown parameter ${}", name));
        auto value = expand(owner, raw(owner, name), depth + 1);
        if (!value) return value;
        out += *value;
    }
    return out;
}

Status Config::validate(std::string_view section, const Parameter& parameter) const {
    auto value = expand(section, raw(section, parameter.name), 0);
    if (!value) return make_error(value.error());
    const std::string& text = *value;
    auto bounds = [&](int64_t number, std::string_view unit) -> Status {
        if (number < parameter.min || number > parameter.max)
            return make_error(fmt::format("{} is out of range ({}{} to {}{})", text, parameter.min, unit, parameter.max, unit));
        return {};
    };
    switch (parameter.type) {
    case Type::string:
    case Type::list: return {};
    case Type::path:
        if (!text.empty() && text.front() != '/') return make_error(fmt::format("'{}' is not an absolute path", text));
        return {};
    case Type::boolean: {
        auto parsed = parse_boolean(text);
        if (!parsed) return make_error(parsed.error());
        return {};
    }
    case Type::integer: {
        int64_t number = 0;
        std::string_view trimmed = trim(text);
        auto [end, error] = std::from_chars(trimmed.data(), trimmed.data() + trimmed.size(), number);
        if (error != std::errc() || end != trimmed.data() + trimmed.size() || trimmed.empty())
            return make_error(fmt::format("'{}' is not an integer", text));
        return bounds(number, "");
    }
    case Type::size: {
        auto parsed = parse_size(text);
        if (!parsed) return make_error(parsed.error());
        if (*parsed > static_cast<uint64_t>(INT64_MAX)) return make_error(fmt::format("'{}' is too large", text));
        return bounds(static_cast<int64_t>(*parsed), " bytes");
    }
    case Type::duration: {
        auto parsed = parse_duration(text);
        if (!parsed) return make_error(parsed.error());
        return bounds(parsed->count(), "ms");
    }
    case Type::mode: {
        auto parsed = parse_mode(text);
        if (!parsed) return make_error(parsed.error());
        return {};
    }
    }
    return {};
}

const Parameter& Config::declared(std::string_view section, std::string_view name, Type type) const {
    const Parameter* parameter = find_parameter(section, name);
    if (parameter == nullptr) panic(fmt::format("config: undeclared parameter [{}] {}", section, name));
    bool compatible = parameter->type == type || (type == Type::string && parameter->type == Type::path) ||
                      (type == Type::string && parameter->type == Type::list);
    if (!compatible)
        panic(fmt::format("config: parameter {} is a {}, read as {}", name, type_name(parameter->type), type_name(type)));
    return *parameter;
}

std::string Config::expanded(std::string_view section, std::string_view name) const {
    auto value = expand(section, raw(section, name), 0);
    // Values were validated at load or set(); an error here is a broken invariant.
    if (!value) panic(fmt::format("config: {} no longer expands: {}", name, value.error()));
    return std::move(value).value();
}

std::string Config::string(std::string_view section, std::string_view name) const {
    declared(section, name, Type::string);
    return expanded(section, name);
}

int64_t Config::integer(std::string_view section, std::string_view name) const {
    declared(section, name, Type::integer);
    std::string text(trim(expanded(section, name)));
    int64_t number = 0;
    std::from_chars(text.data(), text.data() + text.size(), number);
    return number;
}

bool Config::boolean(std::string_view section, std::string_view name) const {
    declared(section, name, Type::boolean);
    return parse_boolean(expanded(section, name)).value();
}

uint64_t Config::size(std::string_view section, std::string_view name) const {
    declared(section, name, Type::size);
    return parse_size(expanded(section, name)).value();
}

std::chrono::milliseconds Config::duration(std::string_view section, std::string_view name) const {
    declared(section, name, Type::duration);
    return parse_duration(expanded(section, name)).value();
}

uint32_t Config::mode(std::string_view section, std::string_view name) const {
    declared(section, name, Type::mode);
    return parse_mode(expanded(section, name)).value();
}

std::vector<std::string> Config::list(std::string_view section, std::string_view name) const {
    declared(section, name, Type::list);
    return split_list(expanded(section, name));
}

std::string Config::show(bool only_changed) const {
    std::string out;
    for (std::string_view section : sections()) {
        std::string block;
        for (const Parameter& parameter : parameters()) {
            if (parameter.section != section) continue;
            if (only_changed && !is_set(section, parameter.name)) continue;
            block += fmt::format("{} = {}\n", parameter.name, expanded(section, parameter.name));
        }
        if (block.empty()) continue;
        if (!section.empty()) out += fmt::format("{}[{}]\n", out.empty() ? "" : "\n", section);
        out += block;
    }
    return out;
}

}  // namespace facteur::config
