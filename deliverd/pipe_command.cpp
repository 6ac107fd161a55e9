// The argv splitter for pipe deliveries: quotes group, nothing else is special.
#include "deliverd/pipe_command.hpp"

#include <fmt/format.h>

namespace facteur::deliverd {

Result<std::vector<std::string>> split_command(std::string_view command) {
    std::vector<std::string> words;
    std::string word;
    bool in_word = false;  // a word has started (possibly empty, from "")
    char quote = 0;        // the open quote character, or 0
    for (char c : command) {
        unsigned char byte = static_cast<unsigned char>(c);
        // A NUL would cut the C string execve sees; CR/LF have no place in
        // a command line and usually mean a forged alias.
        if (byte < 0x20 && c != '\t') return make_error("control character in command");
        if (byte == 0x7f) return make_error("control character in command");
        if (quote != 0) {
            if (c == quote)
                quote = 0;
            else
                word += c;
            continue;
        }
        if (c == ' ' || c == '\t') {
            if (in_word) {
                if (words.size() == kMaxPipeArguments)
                    return make_error(fmt::format("more than {} arguments", kMaxPipeArguments));
                words.push_back(std::move(word));
                word.clear();
                in_word = false;
            }
            continue;
        }
        in_word = true;
        if (c == '"' || c == '\'')
            quote = c;
        else
            word += c;
    }
    if (quote != 0) return make_error(fmt::format("unterminated {} quote", quote == '"' ? "double" : "single"));
    if (in_word) {
        if (words.size() == kMaxPipeArguments) return make_error(fmt::format("more than {} arguments", kMaxPipeArguments));
        words.push_back(std::move(word));
    }
    if (words.empty()) return make_error("empty command");
    if (words[0].empty() || words[0][0] != '/')
        return make_error(fmt::format("the program must be an absolute path, not '{}'", words[0]));
    return words;
}

}  // namespace facteur::deliverd
