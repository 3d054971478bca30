# tests/cli/rollout.sh — scripted users and assistants for the cl-rollout tests (sourced after
# lib.sh and mock.sh).
#
# The mock answers with the reply of the first script line whose "match" occurs in the request
# body, so scripts go from the most specific match to the least: the opening prompt, then the
# user simulator's turns, then the assistant's.

# seeds N [PREFIX]: N seed records s1..sN whose hidden goal names the seed ("goal-I").
seeds() {
    jq -cn --argjson n "$1" --arg p "${2:-}" 'range(1; $n + 1) |
        {id: "s\(.)", task: "document", task_desc: "creative writing",
         prompt: "\($p)goal-\(.): write a short poem", metadata: {k: 1}}'
}

# rule MATCH REPLY: one script line.
rule() { jq -cn --arg m "$1" --arg r "$2" '{match: $m, reply: $r}'; }

# user_says TEXT: a user-simulator JSON reply.
user_says() { jq -cn --arg r "$1" '{thought: "private reasoning", response: $r}'; }

# The standard script: the opening asks for a poem; the user terminates once the assistant has
# said DONE; otherwise asks for changes; the assistant says DONE after "make it rhyme".
standard_script() {
    rule 'about to start a chat' "$(user_says 'help me write a poem')"
    rule '**Assistant**: DONE' "$(user_says 'perfect, thanks! [[TERMINATE CHAT]]')"
    rule 'role-playing a person' "$(user_says 'make it rhyme')"
    rule 'make it rhyme' 'DONE'
}

# A user who never ends the conversation.
endless_script() {
    rule 'about to start a chat' "$(user_says 'help me write a poem')"
    rule 'role-playing a person' "$(user_says 'and now shorter')"
}

ROLL="-q -Z --no-cache --assistant openai:asst --user openai:usr"
