// Drives a running `kvq serve` with the official OpenAI client and prints what it got as one JSON object:
// a completion, a stream joined, and a prompt scored the way lm-evaluation-harness scores one
// (echo with logprobs and max_tokens 0). Usage: node openai-client.mjs BASE_URL MODEL
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0 });

const completion = await client.completions.create({
  model, prompt: "ROMEO:\n", max_tokens: 32, temperature: 0,
});

let streamed = "";
let finishReason = null;
const stream = await client.completions.create({
  model, prompt: "ROMEO:\n", max_tokens: 32, temperature: 0, stream: true,
});
for await (const chunk of stream) {
  streamed += chunk.choices[0].text;
  finishReason = chunk.choices[0].finish_reason ?? finishReason;
}

const scored = await client.completions.create({
  model, prompt: "ROMEO:\nBut soft", max_tokens: 0, echo: true, logprobs: 1,
});

let refusal = null;
try {
  await client.completions.create({ model, prompt: "ROMEO:", max_tokens: -1 });
} catch (e) {
  refusal = { status: e.status, message: e.error?.message ?? e.message };
}

console.log(JSON.stringify({
  completion: completion.choices[0].text,
  completionFinish: completion.choices[0].finish_reason,
  usage: completion.usage,
  streamed,
  streamFinish: finishReason,
  scored: scored.choices[0].logprobs,
  scoredText: scored.choices[0].text,
  refusal,
}));
