from raft.policies.causal_lm import CausalLMPolicy


def test_raw_mode_puts_the_system_prompt_before_the_dialogue():
    prompt = "\n\nHuman: How do I bake bread?\n\nAssistant:"
    plain = CausalLMPolicy("tiny-llama", chat_template=False)
    expert = CausalLMPolicy("tiny-llama", chat_template=False, system_prompt="Be kind and precise.")
    assert plain.format_prompt(None, prompt) == prompt  # raw text needs no tokenizer
    assert expert.format_prompt(None, prompt) == "Be kind and precise.\n\n" + prompt
