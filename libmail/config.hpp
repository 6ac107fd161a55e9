// facteur.conf: the one table of parameters (DESIGN §7), the parser
// (`key = value`, `[section]`, continuation lines, `$name` expansion) and
// typed getters with units (`50M`, `30s`).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "libmail/result.hpp"

namespace facteur::config {

enum class Type {
    string,    // free text (after $name expansion)
    path,      // a file system path; must be absolute when not empty
    integer,   // decimal, bounded by min/max
    boolean,   // yes/no, true/false, on/off, 1/0
    size,      // bytes with an optional K/M/G suffix (powers of 1024), bounded
    duration,  // a number with ms/s/m/h/d/w (default s), bounded in milliseconds
    mode,      // an octal file mode such as 0660
    list,      // comma and/or space separated words
};

struct Parameter {
    std::string_view section;  // "" for the global section
    std::string_view name;
    Type type;
    std::string_view default_value;  // may contain $name references
    int64_t min = 0;                 // for integer, size (bytes) and duration (ms)
    int64_t max = INT64_MAX;
    std::string_view doc;            // one line, also printed in facteur.conf(5)
};

// Every parameter facteur knows, in the order facteur.conf(5) lists them.
std::span<const Parameter> parameters();
const Parameter* find_parameter(std::string_view section, std::string_view name);
// The sections, "" first, each once.
std::vector<std::string_view> sections();
std::string_view type_name(Type type);

// Pure value parsers, exposed for tests and for the CLI.
Result<bool> parse_boolean(std::string_view text);
Result<uint64_t> parse_size(std::string_view text);
Result<std::chrono::milliseconds> parse_duration(std::string_view text);
Result<uint32_t> parse_mode(std::string_view text);
std::vector<std::string> split_list(std::string_view text);

class Config {
public:
    // Only the compiled-in defaults.
    Config();

    // Reads and validates a file; errors name the file and line ("path:12: ...").
    static Result<Config> load(const std::string& path);
    static Result<Config> parse(std::string_view text, std::string_view file_name);

    // The file this configuration was read from ("" for defaults only).
    const std::string& file() const { return file_; }

    // Typed getters. Asking for an undeclared parameter or with the wrong
    // type is a programming error (panic); values were validated at load.
    std::string string(std::string_view section, std::string_view name) const;
    std::string path(std::string_view section, std::string_view name) const { return string(section, name); }
    int64_t integer(std::string_view section, std::string_view name) const;
    bool boolean(std::string_view section, std::string_view name) const;
    uint64_t size(std::string_view section, std::string_view name) const;
    std::chrono::milliseconds duration(std::string_view section, std::string_view name) const;
    uint32_t mode(std::string_view section, std::string_view name) const;
    std::vector<std::string> list(std::string_view section, std::string_view name) const;

    // Global-section shorthands.
    std::string string(std::string_view name) const { return string("", name); }
    std::string path(std::string_view name) const { return string("", name); }

    // True when the file sets this parameter.
    bool is_set(std::string_view section, std::string_view name) const;
    // The value as written (or the default), before $name expansion.
    std::string raw(std::string_view section, std::string_view name) const;

    // Sets a value as if the file had it (tests, command-line overrides);
    // validates it like the parser does.
    Status set(std::string_view section, std::string_view name, std::string_view value);

    // `facteur config show [-n]`: every parameter with its effective
    // (expanded) value, or only those the file sets.
    std::string show(bool only_changed) const;

private:
    struct Setting {
        std::string value;
        int line = 0;
    };
    using Key = std::pair<std::string, std::string>;

    Result<std::string> expand(std::string_view section, std::string_view text, int depth) const;
    Status validate(std::string_view section, const Parameter& parameter) const;
    const Parameter& declared(std::string_view section, std::string_view name, Type type) const;
    std::string expanded(std::string_view section, std::string_view name) const;

    std::string file_;
    std::map<Key, Setting, std::less<>> settings_;
};

}  // namespace facteur::config
