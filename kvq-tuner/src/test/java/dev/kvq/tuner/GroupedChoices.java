package dev.kvq.tuner;

import java.util.ArrayList;
import java.util.List;

/** Every choice of a grouped space (one candidate index per group), for brute-force checks on small spaces. */
final class GroupedChoices {
    private GroupedChoices() {
    }

    static List<int[]> all(List<Profile.Group> groups) {
        List<int[]> out = new ArrayList<>();
        int[] choice = new int[groups.size()];
        while (true) {
            out.add(choice.clone());
            int i = groups.size() - 1;
            while (i >= 0 && ++choice[i] == groups.get(i).candidates().size()) {
                choice[i--] = 0;
            }
            if (i < 0) {
                return out;
            }
        }
    }
}
