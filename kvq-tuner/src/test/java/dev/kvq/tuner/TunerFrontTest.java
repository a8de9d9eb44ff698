package dev.kvq.tuner;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class TunerFrontTest {
    private static Tuner.Point point(String name, double bits, double score) {
        return new Tuner.Point(List.of(name), Map.of(), bits, bits, bits, score, true);
    }

    @Test
    void equalAveragesThatDifferInTheLastBitDoNotBothStayOnTheFront() {
        // 14/6 reached as (8/3 + 2) / 2 and as (7/3 + 7/3) / 2: the two doubles differ in the last bit
        double viaKeys = (2.6666666666666665 + 2.0) / 2;
        double viaBoth = (2.3333333333333335 + 2.3333333333333335) / 2;
        Tuner.Point worse = point("worse", Math.min(viaKeys, viaBoth), -0.5667);
        Tuner.Point better = point("better", Math.max(viaKeys, viaBoth), -0.6933);
        List<Tuner.Point> front = Tuner.front(List.of(worse, better, point("cheap", 2.0, -0.42)));
        assertEquals(List.of("cheap", "better"), front.stream().map(p -> p.groupChoice().getFirst()).toList());
    }

    @Test
    void tiesKeepTheFirstPointOnly() {
        List<Tuner.Point> front = Tuner.front(List.of(point("a", 2.5, -0.8), point("b", 2.5, -0.8),
                point("c", 3.0, -0.9), point("d", 3.0, -0.7)));
        assertEquals(List.of("a", "c"), front.stream().map(p -> p.groupChoice().getFirst()).toList());
    }
}
