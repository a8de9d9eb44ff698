package dev.kvq.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kvq.KvqException;
import java.util.List;
import org.junit.jupiter.api.Test;

class Gsm8kTest {
    @Test
    void buildsKvtunersFewShotPrompt() {
        List<Gsm8k.Example> shots = List.of(new Gsm8k.Example("What is 1+1?", "1+1=2\n#### 2"),
                new Gsm8k.Example("What is 2*3?", "2*3=6\n#### 6"));
        assertEquals("Question: What is 1+1?\nAnswer: 1+1=2\n#### 2.\n\n"
                + "Question: What is 2*3?\nAnswer: 2*3=6\n#### 6.\n\n"
                + "Question: How many?\nAnswer:", Gsm8k.prompt(shots, "How many?"));
        assertEquals("Question: Q\nAnswer:", Gsm8k.prompt(List.of(), "Q"));
    }

    @Test
    void extractsTheFirstNumberAfterTheMarker() {
        assertEquals("18", Gsm8k.extract(" She sells 16 - 3 - 4 = 9 eggs, 9 * 2 = 18 dollars.\n#### 18.\n\nQuestion"));
        assertEquals("1200", Gsm8k.extract("#### 1,200 and then 5"));
        assertEquals("-3.5", Gsm8k.extract("so #### -3.5"));
    }

    @Test
    void fallsBackToTheLastNumber() {
        assertEquals("42", Gsm8k.extract(" 6 * 7 = 42."));
        assertEquals("3000", Gsm8k.extract(" It costs 1,000 per month, so 3,000."));
        assertNull(Gsm8k.extract(" no numbers here"));
        assertNull(Gsm8k.extract("#### none"));
    }

    @Test
    void readsTheReferenceAnswer() {
        assertEquals("72", Gsm8k.reference("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72"));
        assertEquals("1000000", Gsm8k.reference("... \n#### 1,000,000"));
        assertThrows(KvqException.class, () -> Gsm8k.reference("no marker"));
    }

    @Test
    void scoresByExactMatchOfNormalizedNumbers() {
        assertEquals(Gsm8k.reference("x\n#### 18"), Gsm8k.extract("#### 18."));
        assertEquals("18.0", Gsm8k.extract("#### 18.0"));
    }
}
